//! Real SMTP and FTP servers for the email and FTP destination tests:
//! `tests/mail_ftp/servers.py` (aiosmtpd, pyftpdlib; installed into .venv
//! by .ci/run) in a child process on fixed free ports, so a test can stop
//! it and start it again where it was. What arrives is read from its
//! directory: mails as parsed by Python's email package, files as stored by
//! the FTP server. Also what the email and FTP tests share: the flags of a
//! server that sends to them, events with every field, and reading CSV.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, in_ci, spawn_app_with, Backend, TestApp};

pub const USER: &str = "eventd";
pub const PASSWORD: &str = "secret";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("EVENTD_INTEROP_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The Python with aiosmtpd, pyftpdlib and pyOpenSSL, or false (skip) when
/// missing outside CI; under a truthy CI a missing one fails the test.
pub fn available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import aiosmtpd, pyftpdlib, OpenSSL, cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let note = format!(
            "{} lacks aiosmtpd/pyftpdlib/pyOpenSSL (pip install -r tests/mail_ftp/requirements.txt; .ci/run does)",
            python().display()
        );
        assert!(!in_ci(), "{note}");
        eprintln!("SKIPPED: {note}");
    }
    ok
}

/// Which SMTP server of [`Servers`] a test eventd sends through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// No TLS, no AUTH.
    Plain,
    /// STARTTLS required, AUTH with the URL's user and password.
    StartTls,
}

/// The flags of a test server that mails through `relay` and uploads to
/// these servers (private targets allowed, the test CA trusted), with
/// 1-second periods allowed, a quick retry schedule (100 ms, 300 times)
/// and suspension after `suspend_after` consecutive failures.
pub fn flags(s: &Servers, relay: Relay, suspend_after: u32) -> Vec<String> {
    let url = match relay {
        Relay::StartTls => format!("smtp://{USER}:{PASSWORD}@127.0.0.1:{}?tls=starttls", s.smtp_tls),
        Relay::Plain => format!("smtp://127.0.0.1:{}", s.smtp),
    };
    [
        "--smtp-url",
        &url,
        "--smtp-from",
        "eventd <noreply@eventd.test>",
        "--tls-ca-file",
        &s.ca_file(),
        "--allow-private-targets",
        "--push-retry-schedule",
        "100ms*300",
        "--push-poll-interval",
        "20ms",
        "--min-period-seconds",
        "1",
        "--push-suspend-after",
        &suspend_after.to_string(),
    ]
    .iter()
    .map(|f| f.to_string())
    .collect()
}

/// A test server (in this process) with [`flags`] and `extra`.
pub async fn app_for(b: Backend, s: &Servers, relay: Relay, suspend_after: u32, extra: &[&str]) -> TestApp {
    let mut args = flags(s, relay, suspend_after);
    args.extend(extra.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_app_with(b, &args).await
}

/// `n` events of `trigger` with every field a client can set (commas,
/// quotes and a newline among them), told apart by `external_id`
/// `{tag}-{i}`.
pub fn events(n: usize, tag: &str, trigger: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "trigger": trigger,
                "occurred_at": format!("2026-12-06T10:00:{:02}.000Z", i % 60),
                "recipient": format!("r{i}.{tag}@x.test"),
                "campaign_id": format!("camp-{i}"),
                "url": "https://x.test/a?b=1,c=\"2\"",
                "ip": "192.0.2.7",
                "user_agent": "Mozilla/5.0 (X11; Linux)",
                "external_id": format!("{tag}-{i}"),
                "data": {"note": format!("line one\nline, two {i}"), "n": i},
            })
        })
        .collect()
}

/// The records of a CSV file with a header row, as field → value.
pub fn csv_records(body: &str) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "id", "the header row comes first");
    r.records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// One event as a CSV row shows it: field → value.
pub type Row = HashMap<String, String>;
/// Events by `external_id`: each row showing one, with the name of the file
/// or attachment it is in.
pub type RowsById = HashMap<String, Vec<(Row, String)>>;

/// Every event of CSV `files` (name, body), by `external_id`.
pub fn rows_by_external_id(files: &[(String, String)]) -> RowsById {
    let mut out = RowsById::new();
    for (name, body) in files {
        for row in csv_records(body) {
            out.entry(row["external_id"].clone())
                .or_default()
                .push((row, name.clone()));
        }
    }
    out
}

/// The rows of a digest mail's CSV attachment (header row, RFC 4180, UTF-8).
pub fn attachment_rows(mail: &Value) -> Vec<HashMap<String, String>> {
    let att = &mail["attachments"][0];
    assert_eq!(att["content_type"], "text/csv");
    assert_eq!(att["charset"], "utf-8");
    csv_records(att["content"].as_str().unwrap())
}

/// Checks one event as shown (mail body or CSV row: `data` as JSON text)
/// against what was ingested.
pub fn same_event(shown: &HashMap<String, String>, sent: &Value) {
    for field in [
        "trigger",
        "recipient",
        "campaign_id",
        "url",
        "ip",
        "user_agent",
        "external_id",
        "occurred_at",
    ] {
        assert_eq!(shown.get(field).map(String::as_str), sent[field].as_str(), "{field}");
    }
    let data: Value = serde_json::from_str(&shown["data"]).unwrap();
    assert_eq!(data, sent["data"]);
    assert_eq!(shown["id"].len(), 36, "a UUID");
    assert!(shown["received_at"].ends_with('Z'));
}

/// The period start (ms) in a file or attachment name
/// `eventd_{account}_{TRIGGER}_{YYYYMMDDTHHMMSSZ}[_{part}].{ext}`.
pub fn period_start_of(name: &str) -> i64 {
    let stamp = name
        .split(['_', '.'])
        .find(|p| p.len() == 16 && p.ends_with('Z') && p.as_bytes()[8] == b'T')
        .unwrap_or_else(|| panic!("no period start in '{name}'"));
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Asserts that an event (its `received_at`) belongs to the period starting
/// at `start` of `period_ms`.
pub fn in_period(row: &HashMap<String, String>, start: i64, period_ms: i64, name: &str) {
    let at = chrono::DateTime::parse_from_rfc3339(&row["received_at"])
        .unwrap()
        .timestamp_millis();
    assert!(
        (start..start + period_ms).contains(&at),
        "{} received at {} is not in the period of {name}",
        row["external_id"],
        row["received_at"]
    );
}

pub struct Servers {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub smtp: u16,
    pub smtp_tls: u16,
    pub ftp: u16,
    pub ftps: u16,
}

impl Servers {
    pub fn start() -> Servers {
        let mut s = Servers {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            smtp: free_port(),
            smtp_tls: free_port(),
            ftp: free_port(),
            ftps: free_port(),
        };
        s.restart();
        s
    }

    /// Starts the servers (again) on their ports; waits until they listen.
    pub fn restart(&mut self) {
        self.stop();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail_ftp/servers.py");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(python())
                .arg(&script)
                .args(["--dir", &self.dir.path().to_string_lossy()])
                .args(["--smtp-port", &self.smtp.to_string()])
                .args(["--smtp-tls-port", &self.smtp_tls.to_string()])
                .args(["--ftp-port", &self.ftp.to_string()])
                .args(["--ftps-port", &self.ftps.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the test servers start");
            let mut out = child.stdout.take().unwrap();
            let ready = std::thread::spawn(move || {
                let mut buf = String::new();
                let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&mut out, 6), &mut buf);
                buf.starts_with("READY")
            })
            .join()
            .unwrap_or(false);
            if ready {
                self.child = Some(child);
                return;
            }
            // A port of the previous run not yet free: try again.
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "the SMTP/FTP test servers did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the servers (a crash: nothing is flushed or said goodbye).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").to_string_lossy().to_string()
    }

    pub fn ftp_home(&self) -> PathBuf {
        self.dir.path().join("ftp")
    }

    /// Every mail received so far, oldest first (parsed: envelope, headers,
    /// text, attachments).
    pub fn mails(&self) -> Vec<Value> {
        let dir = self.dir.path().join("mail");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "json"));
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits until at least `n` mails arrived (or panics after `secs`).
    pub async fn wait_mails(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(Instant::now() < deadline, "{n} mails expected, {} arrived", mails.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The complete files in an FTP directory (not the `.part` uploads), by name.
    pub fn files(&self, sub: &str) -> Vec<(String, String)> {
        let dir = self.ftp_home().join(sub.trim_start_matches('/'));
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.starts_with('.'))
                    .map(|n| {
                        let body = std::fs::read_to_string(dir.join(&n)).unwrap_or_default();
                        (n, body)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Waits until the files of `sub` hold `events` events in all (CSV rows
    /// or JSON lines) or panics after `secs`.
    pub async fn wait_file_events(&self, sub: &str, events: usize, secs: u64) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let files = self.files(sub);
            let n: usize = files.iter().map(|(name, body)| file_events(name, body)).sum();
            if n >= events {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "{events} events expected in FTP files, {n} arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Events in a file: CSV data rows or JSON lines.
pub fn file_events(name: &str, body: &str) -> usize {
    if name.ends_with(".csv") {
        csv::Reader::from_reader(body.as_bytes()).records().count()
    } else {
        body.lines().filter(|l| !l.is_empty()).count()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}
