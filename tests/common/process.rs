//! `eventd serve` in a child process of its own, for tests that kill it
//! (SIGKILL: nothing is flushed or given back) and start it again on the
//! same database. Talked to through a [`TestApp`] like an in-process server.

use std::process::Child;
use std::time::{Duration, Instant};

use super::{free_port, serve_command, Backend, TestApp};

pub struct ServerProcess {
    child: Child,
    /// Its log (RUST_LOG=info), for a failing test to show.
    pub log: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `eventd serve` on a free port with `flags`, its log appended
    /// to `log`; returns once `/readyz` answers 200, with a [`TestApp`]
    /// that talks to it (the database stays the caller's).
    pub async fn start(
        backend: Backend,
        db_url: &str,
        flags: &[String],
        log: &std::path::Path,
    ) -> (ServerProcess, TestApp) {
        let port = free_port();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let child = serve_command(db_url, port, &flags)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(out)
            .spawn()
            .expect("the eventd binary starts");
        let server = ServerProcess {
            child,
            log: log.to_path_buf(),
        };
        let app = TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            backend,
            db_url: db_url.to_string(),
            client: reqwest::Client::new(),
            _tmp: None,
            _pg: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = app
                .client
                .get(app.url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return (server, app);
            }
            assert!(
                Instant::now() < deadline,
                "eventd did not become ready; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
