//! What the binary writes to stderr: colour codes only on a terminal, and
//! never with `NO_COLOR` set.

use std::process::{Command, Stdio};

/// `eventd migrate` on a fresh SQLite file logs one INFO line to stderr.
fn migrate_command(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eventd"));
    c.args(["migrate", "--database-url"])
        .arg(dir.path().join("eventd.db"))
        .env_remove("DATABASE_URL")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info");
    c
}

const ESC: u8 = 0x1b;

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = migrate_command(&dir).stderr(Stdio::piped()).output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO") && log.contains("migrations applied"), "{log}");
    assert!(!out.stderr.contains(&ESC), "colour codes in a piped log: {log:?}");
}

/// Runs the command on a pseudo-terminal (util-linux `script`) and returns
/// what the terminal showed.
fn on_a_terminal(no_color: Option<&str>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let inner = migrate_command(&dir);
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"])
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let out = c.stdin(Stdio::null()).output().expect("util-linux `script` runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    out.stdout
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    assert!(on_a_terminal(None).contains(&ESC), "a terminal gets colour");
    assert!(on_a_terminal(Some("")).contains(&ESC), "an empty NO_COLOR is unset");
    assert!(!on_a_terminal(Some("1")).contains(&ESC), "NO_COLOR=1 means none");
}
