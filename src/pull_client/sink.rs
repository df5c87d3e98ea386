//! Where `eventd pull` writes batches, durably: a batch is only reported
//! written once it is flushed to stdout, or written and fsynced to a file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde_json::value::RawValue;

use crate::domain::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line, exactly as the server sent it.
    Jsonl,
    /// RFC 4180 CSV with a header line: the event's fields in canonical
    /// order, `data` as its JSON text.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// The output: `-` (stdout), a directory (an existing one, or a path ending
/// in `/`) that gets one file per batch, or a file that batches are appended to.
#[derive(Debug)]
pub enum Sink {
    Stdout { header_written: bool },
    File(PathBuf),
    Dir(PathBuf),
}

impl Sink {
    pub fn open(out: &str) -> anyhow::Result<Sink> {
        if out == "-" {
            return Ok(Sink::Stdout { header_written: false });
        }
        let path = PathBuf::from(out);
        if out.ends_with('/') || path.is_dir() {
            std::fs::create_dir_all(&path).with_context(|| format!("creating the directory {out}"))?;
            return Ok(Sink::Dir(path));
        }
        Ok(Sink::File(path))
    }

    /// Writes one batch and returns only when it is durable (stdout: flushed;
    /// files: fsynced, with their directory entry). In a directory the
    /// batch's file is named after the batch, so a batch delivered again
    /// after a crash replaces its own file instead of duplicating it.
    pub fn write_batch(&mut self, batch_id: &str, events: &[Box<RawValue>], format: Format) -> anyhow::Result<()> {
        match self {
            Sink::Stdout { header_written } => {
                let mut out = io::stdout().lock();
                encode(&mut out, events, format, !*header_written)?;
                out.flush().context("writing to stdout")?;
                *header_written = true;
            }
            Sink::File(path) => {
                let existed = path.exists();
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&*path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let empty = f.metadata()?.len() == 0;
                write_all(&mut f, events, format, empty)?;
                f.sync_data().with_context(|| format!("fsync of {}", path.display()))?;
                if !existed {
                    sync_dir(parent(path))?;
                }
            }
            Sink::Dir(dir) => {
                let fit = !batch_id.is_empty()
                    && batch_id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !fit {
                    bail!("the server sent a batch id unfit for a file name: {batch_id:?}");
                }
                let name = format!("{batch_id}.{}", format.extension());
                let tmp = dir.join(format!(".{name}.tmp"));
                let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                write_all(&mut f, events, format, true)?;
                f.sync_all().with_context(|| format!("fsync of {}", tmp.display()))?;
                std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("renaming {}", tmp.display()))?;
                sync_dir(dir)?;
            }
        }
        Ok(())
    }
}

/// Encodes the batch into `f` through a buffer (not yet fsynced).
fn write_all(f: &mut File, events: &[Box<RawValue>], format: Format, header: bool) -> anyhow::Result<()> {
    let mut w = io::BufWriter::new(f);
    encode(&mut w, events, format, header)?;
    w.flush()?;
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a new or renamed directory entry durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of the directory {}", dir.display()))
}

fn encode(out: &mut dyn Write, events: &[Box<RawValue>], format: Format, header: bool) -> anyhow::Result<()> {
    match format {
        Format::Jsonl => {
            for e in events {
                out.write_all(e.get().as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(out);
            if header {
                w.write_record(column_names())?;
            }
            for raw in events {
                let event: Event =
                    serde_json::from_str(raw.get()).context("the server sent an event that is not one")?;
                w.write_record(event.fields().iter().map(|(_, v)| v.as_deref().unwrap_or("")))?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// The CSV columns: [`Event::fields`]' names.
fn column_names() -> Vec<&'static str> {
    let sample = Event {
        id: String::new(),
        trigger: crate::domain::Trigger::Open,
        occurred_at: String::new(),
        received_at: String::new(),
        recipient: None,
        campaign_id: None,
        message_id: None,
        list_id: None,
        url: None,
        bounce_type: None,
        bounce_reason: None,
        ip: None,
        user_agent: None,
        external_id: None,
        data: None,
    };
    sample.fields().into_iter().map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Box<RawValue>> {
        (0..n)
            .map(|i| {
                RawValue::from_string(format!(
                    r#"{{"id":"e{i}","trigger":"CLICK","occurred_at":"t","received_at":"t","recipient":"r{i}@x.test","url":"https://x.test/a,b","data":{{"k":"v"}}}}"#
                ))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_file_gets_one_csv_header_and_every_batch_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut sink = Sink::open(path.to_str().unwrap()).unwrap();
        assert!(matches!(sink, Sink::File(_)));
        sink.write_batch("b1", &events(2), Format::Csv).unwrap();
        sink.write_batch("b2", &events(1), Format::Csv).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("id,trigger,occurred_at,received_at,recipient,"));
        assert!(lines[1].contains(r#""https://x.test/a,b""#) && lines[1].contains(r#""{""k"":""v""}""#));
    }

    #[test]
    fn a_directory_gets_one_file_per_batch_replaced_when_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let out = format!("{}/new/", dir.path().display());
        let mut sink = Sink::open(&out).unwrap();
        sink.write_batch("0193-a", &events(2), Format::Jsonl).unwrap();
        sink.write_batch("0193-a", &events(2), Format::Jsonl).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["0193-a.jsonl"]);
        let text = std::fs::read_to_string(dir.path().join("new/0193-a.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(sink.write_batch("../escape", &events(1), Format::Jsonl).is_err());
    }
}
