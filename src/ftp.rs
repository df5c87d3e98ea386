//! The FTP transport of FTP destinations, shared by the delivery worker and
//! `POST /v1/triggers/{T}/test` (suppaftp over tokio, rustls for FTPS):
//! connect (private addresses refused unless allowed), optional explicit
//! TLS (`AUTH TLS`, protected data), login, passive mode, upload to a
//! temporary name in the directory, rename to the final name, so a reader
//! never sees half a file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use suppaftp::tokio_rustls::TlsConnector;
use suppaftp::types::FileType;
use suppaftp::FtpError;

use crate::domain::{FtpSettings, FtpTls};
use crate::webhook::is_private;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one whole upload (login to rename) may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_REPLY: usize = 1024;

#[derive(Debug, Clone)]
pub struct FtpAnswer {
    pub success: bool,
    /// The FTP reply code of the step that failed (or of the rename).
    pub code: Option<u16>,
    pub reply: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

/// Uploads files; holds the TLS settings of FTPS.
#[derive(Clone)]
pub struct Uploader {
    tls: Arc<ClientConfig>,
    allow_private: bool,
}

/// A failed step: its name and the error.
struct StepError(String, FtpError);

/// At most MAX_REPLY bytes of `s`, cut at a character boundary.
fn clip(mut s: String) -> String {
    s.truncate(s.floor_char_boundary(MAX_REPLY));
    s
}

trait Step<T> {
    fn step(self, name: &str) -> Result<T, StepError>;
}

impl<T> Step<T> for Result<T, FtpError> {
    fn step(self, name: &str) -> Result<T, StepError> {
        self.map_err(|e| StepError(name.to_string(), e))
    }
}

impl Uploader {
    /// `extra_roots`: DER certificates trusted besides the usual web roots.
    pub fn new(extra_roots: &[Vec<u8>], allow_private: bool) -> anyhow::Result<Uploader> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| anyhow::anyhow!("--tls-ca-file: {e}"))?;
        }
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("FTPS TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Uploader {
            tls: Arc::new(config),
            allow_private,
        })
    }

    /// What the attempt log shows as the target (never the password).
    pub fn target(settings: &FtpSettings, name: &str) -> String {
        let scheme = match settings.tls {
            FtpTls::None => "ftp",
            FtpTls::Explicit => "ftps",
        };
        let dir = settings.directory.trim_matches('/');
        let path = if dir.is_empty() {
            format!("/{name}")
        } else {
            format!("/{dir}/{name}")
        };
        format!(
            "{scheme}://{}@{}:{}{path}",
            settings.username, settings.host, settings.port
        )
    }

    async fn address(&self, settings: &FtpSettings) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((settings.host.as_str(), settings.port))
            .await
            .map_err(|e| format!("cannot resolve '{}': {e}", settings.host))?
            .collect();
        addrs
            .into_iter()
            .find(|a| self.allow_private || !is_private(a.ip()))
            .ok_or_else(|| {
                format!(
                    "'{}' has no public address (private targets need --allow-private-targets)",
                    settings.host
                )
            })
    }

    /// Uploads `body` as `name` into the destination's directory.
    pub async fn upload(&self, settings: &FtpSettings, name: &str, body: &[u8]) -> FtpAnswer {
        let started = Instant::now();
        let result = tokio::time::timeout(UPLOAD_TIMEOUT, self.run(settings, name, body)).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let fail = |code: Option<u16>, error: String| FtpAnswer {
            success: false,
            code,
            reply: None,
            error: Some(clip(error)),
            latency_ms,
        };
        match result {
            Err(_) => fail(None, format!("FTP: no answer within {} s", UPLOAD_TIMEOUT.as_secs())),
            Ok(Err(Failure::Before(e))) => fail(None, format!("FTP: {e}")),
            Ok(Err(Failure::Step(StepError(step, e)))) => {
                let (code, text) = match &e {
                    FtpError::UnexpectedResponse(r) => (
                        Some(r.status.code() as u16),
                        String::from_utf8_lossy(&r.body).trim().to_string(),
                    ),
                    other => (None, other.to_string()),
                };
                fail(code, format!("FTP {step}: {text}"))
            }
            Ok(Ok(reply)) => FtpAnswer {
                success: true,
                code: Some(250),
                reply: Some(clip(reply)),
                error: None,
                latency_ms,
            },
        }
    }

    async fn run(&self, s: &FtpSettings, name: &str, body: &[u8]) -> Result<String, Failure> {
        let addr = self.address(s).await.map_err(Failure::Before)?;
        let mut ftp = AsyncRustlsFtpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .await
            .step("connect")?;
        // Data connections go to the control connection's address whatever
        // PASV answers (NAT, and no redirection to other hosts).
        ftp.set_passive_nat_workaround(true);
        if s.tls == FtpTls::Explicit {
            ServerName::try_from(s.host.clone()).map_err(|e| Failure::Before(format!("TLS name: {e}")))?;
            let connector = AsyncRustlsConnector::from(TlsConnector::from(self.tls.clone()));
            ftp = ftp.into_secure(connector, &s.host).await.step("AUTH TLS")?;
        }
        ftp.login(s.username.as_str(), s.password.as_str())
            .await
            .step("login")?;
        ftp.transfer_type(FileType::Binary).await.step("TYPE I")?;
        if !s.directory.is_empty() && s.directory != "." {
            ftp.cwd(&s.directory).await.step("CWD")?;
        }
        let temporary = format!(".{name}.part");
        let mut reader = body;
        ftp.put_file(&temporary, &mut reader).await.step("STOR")?;
        ftp.rename(temporary.as_str(), name).await.step("RNTO")?;
        let _ = ftp.quit().await;
        Ok(format!("uploaded {} bytes as {name}", body.len()))
    }
}

enum Failure {
    /// Before any FTP exchange (resolution, refused address).
    Before(String),
    Step(StepError),
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure::Step(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FileFormat;

    #[test]
    fn target_never_shows_the_password() {
        let s = FtpSettings {
            host: "ftp.example.com".into(),
            port: 21,
            username: "acme".into(),
            password: "s3cret".into(),
            directory: "in/".into(),
            every_seconds: 60,
            format: FileFormat::Csv,
            tls: FtpTls::Explicit,
        };
        let t = Uploader::target(&s, "f.csv");
        assert_eq!(t, "ftps://acme@ftp.example.com:21/in/f.csv");
        assert!(!t.contains("s3cret"));
        for (directory, shown) in [("/", "/f.csv"), ("", "/f.csv"), ("/in/sub", "/in/sub/f.csv")] {
            let s = FtpSettings {
                directory: directory.into(),
                ..s.clone()
            };
            assert_eq!(
                Uploader::target(&s, "f.csv"),
                format!("ftps://acme@ftp.example.com:21{shown}")
            );
        }
    }
}
