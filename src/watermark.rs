//! Storage watermarks: ingest stops before the disk is full. A full disk
//! used to fail ingest with 500 and, worse, fetching too (a claim writes a
//! batch row), so consumers could not drain the queue to free space. Now,
//! above `--max-db-size` or below `--min-free-disk`, ingest answers 507
//! `storage_full` on every face while fetch, mark-read and release go on;
//! `/readyz` says it, `eventd_storage_full` is 1, and a log line marks each
//! change. Measured at most every [`SQLITE_EVERY`] / [`POSTGRES_EVERY`]
//! (a stat and a statvfs of the SQLite file; `pg_database_size`).
//!
//! A real full disk (watermarks off, or passed in one step) shows as the
//! database's own out-of-space errors: each answers 507 `storage_full`,
//! and `/readyz` and the gauge report it from the last such error until an
//! ingest commits or [`OUT_OF_SPACE_REPORTED`] passes without another.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::domain::time::now_ms;
use crate::store::{Backend, Store, StoreError, StoreResult};

const SQLITE_EVERY: Duration = Duration::from_millis(250);
const POSTGRES_EVERY: Duration = Duration::from_secs(5);
/// How long the database's last out-of-space error is reported.
pub const OUT_OF_SPACE_REPORTED: Duration = Duration::from_secs(60);

/// Free space to keep: bytes, or a percentage of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    /// "5%", "0", "512M", "2G", "1048576".
    pub fn parse(raw: &str) -> Result<Threshold, String> {
        let t = raw.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| format!("'{raw}' is not a percentage"))?;
            if !(0.0..100.0).contains(&v) {
                return Err(format!("'{raw}': a percentage from 0 to below 100"));
            }
            return Ok(Threshold::Percent(v));
        }
        parse_bytes(t).map(Threshold::Bytes)
    }

    fn bytes_of(self, total: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// Bytes with an optional unit k, M, G or T (powers of 1024; "KiB", "MB"… too).
pub fn parse_bytes(raw: &str) -> Result<u64, String> {
    let t = raw.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{raw}' is not a size (e.g. 512M, 2G)"))?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("'{raw}': unknown unit (use k, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{raw}' is too large"))
}

/// Free and total bytes of the filesystem holding `path`.
fn filesystem_space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = s.f_frsize as u64;
    Ok((s.f_bavail as u64 * unit, s.f_blocks as u64 * unit))
}

struct Measured {
    at: Instant,
    /// Why ingest is refused, if it is.
    full: Option<String>,
}

struct Inner {
    store: Store,
    sqlite_file: Option<PathBuf>,
    min_free: Threshold,
    max_db: Option<u64>,
    every: Duration,
    gauge: IntGauge,
    last: Mutex<Option<Measured>>,
}

#[derive(Clone)]
pub struct Watermarks {
    inner: Arc<Inner>,
}

impl Watermarks {
    /// `database_url` names the SQLite file (whose filesystem is watched).
    pub fn new(store: Store, database_url: &str, min_free: Threshold, max_db: Option<u64>, gauge: IntGauge) -> Self {
        let sqlite = store.backend() == Backend::Sqlite;
        let sqlite_file = sqlite.then(|| PathBuf::from(database_url.strip_prefix("sqlite://").unwrap_or(database_url)));
        Watermarks {
            inner: Arc::new(Inner {
                store,
                sqlite_file,
                min_free,
                max_db,
                every: if sqlite { SQLITE_EVERY } else { POSTGRES_EVERY },
                gauge,
                last: Mutex::new(None),
            }),
        }
    }

    fn enabled(&self) -> bool {
        let i = &self.inner;
        i.max_db.is_some() || (i.sqlite_file.is_some() && i.min_free.bytes_of(u64::MAX) > 0)
    }

    /// Ingest may go on: `Err(StorageFull)` while a watermark is reached.
    /// (Not after the database's own out-of-space error: ingest is tried,
    /// so it works again as soon as space is added.)
    pub async fn admit(&self) -> StoreResult<()> {
        match self.watermark().await {
            None => Ok(()),
            Some(reason) => Err(StoreError::StorageFull(reason)),
        }
    }

    /// Why storage is full now, if it is (for `/readyz`; also sets the
    /// gauge): a watermark, or a recent out-of-space error of the database.
    pub async fn state(&self) -> Option<String> {
        let full = self.watermark().await.or_else(|| self.database_out_of_space());
        self.inner.gauge.set(i64::from(full.is_some()));
        full
    }

    fn database_out_of_space(&self) -> Option<String> {
        let at = self.inner.store.out_of_space_at()?;
        let ago = (now_ms() - at).max(0);
        (ago < OUT_OF_SPACE_REPORTED.as_millis() as i64).then(|| {
            format!(
                "the database failed a write for lack of space {:.1} s ago (ingest, fetch and mark-read may fail until space is added)",
                ago as f64 / 1000.0
            )
        })
    }

    /// Why ingest is refused by a watermark now, if it is.
    async fn watermark(&self) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        if let Some(full) = self.fresh() {
            return full;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.measure()).await.unwrap_or(None)
    }

    fn fresh(&self) -> Option<Option<String>> {
        let last = self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|m| m.at.elapsed() < self.inner.every)
            .map(|m| m.full.clone())
    }

    /// Measures (blocking), remembers, logs a change.
    fn measure(&self) -> Option<String> {
        let i = &self.inner;
        let mut last = i.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = last.as_ref().filter(|m| m.at.elapsed() < i.every) {
            return m.full.clone();
        }
        let full = self.reason();
        let was_full = last.as_ref().is_some_and(|m| m.full.is_some());
        match (&full, was_full) {
            (Some(reason), false) => {
                tracing::warn!(%reason, "storage watermark reached: ingest is refused (507 storage_full) until space is freed; fetch and mark-read go on");
            }
            (None, true) => tracing::info!("storage below its watermarks again: ingest accepted"),
            _ => {}
        }
        i.gauge
            .set(i64::from(full.is_some() || self.database_out_of_space().is_some()));
        *last = Some(Measured {
            at: Instant::now(),
            full: full.clone(),
        });
        full
    }

    fn reason(&self) -> Option<String> {
        let i = &self.inner;
        let size = match &i.sqlite_file {
            Some(file) => {
                let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let mut wal = file.clone().into_os_string();
                wal.push("-wal");
                Some(len(file.clone()) + len(PathBuf::from(wal)))
            }
            None if i.max_db.is_some() => match i.store.database_size() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "measuring the database size failed");
                    None
                }
            },
            None => None,
        };
        if let (Some(max), Some(size)) = (i.max_db, size) {
            if size > max {
                return Some(format!("the database takes {size} bytes, over --max-db-size {max}"));
            }
        }
        let file = i.sqlite_file.as_ref()?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match filesystem_space(&dir) {
            Ok((free, total)) => {
                let keep = i.min_free.bytes_of(total);
                (keep > 0 && free < keep).then(|| {
                    format!(
                        "{free} bytes free on the filesystem of {}, under --min-free-disk ({keep} bytes)",
                        file.display()
                    )
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "measuring free disk space failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_sizes() {
        assert_eq!(Threshold::parse("5%"), Ok(Threshold::Percent(5.0)));
        assert_eq!(Threshold::parse("0"), Ok(Threshold::Bytes(0)));
        assert_eq!(Threshold::parse("512M"), Ok(Threshold::Bytes(512 << 20)));
        assert!(Threshold::parse("100%").is_err());
        assert!(Threshold::parse("x%").is_err());
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("3kB"), Ok(3 << 10));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999T").is_err());
        assert_eq!(Threshold::Percent(1.0).bytes_of(1000), 10);
    }

    #[test]
    fn free_space_of_a_real_filesystem() {
        let (free, total) = filesystem_space(std::path::Path::new(".")).unwrap();
        assert!(total > 0 && free <= total);
    }
}
