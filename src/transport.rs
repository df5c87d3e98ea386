//! One send over a destination's transport, classified for the pipeline
//! (shared by the delivery worker and `POST /v1/triggers/{T}/test`):
//! an HTTP request (one event, or a JSON array of `batch_size`), a mail (one
//! event, or a period's digest), or a period's file uploaded to FTP. The
//! worker claims, leases, retries and records every one the same way.

use crate::domain::event::Event;
use crate::domain::{export, DeliverySettings};
use crate::ftp::Uploader;
use crate::mail::{MailAnswer, MailOutcome, Mailer};
use crate::store::push::OutcomeKind;
use crate::webhook::{prepare, Webhooks};

/// What the transports are built from; [`TransportSettings::build`] must
/// run inside the tokio runtime that sends (the SMTP pool lives there).
#[derive(Clone)]
pub struct TransportSettings {
    pub webhooks: Webhooks,
    /// `--smtp-url` and `--smtp-from`, when both are given.
    pub smtp: Option<(String, String)>,
    /// DER certificates trusted besides the public roots (`--tls-ca-file`).
    pub extra_roots: Vec<Vec<u8>>,
    pub allow_private: bool,
}

impl TransportSettings {
    pub fn build(&self) -> anyhow::Result<Transports> {
        let mailer = match &self.smtp {
            Some((url, from)) => Some(Mailer::new(url, from, &self.extra_roots)?),
            None => None,
        };
        Ok(Transports {
            webhooks: self.webhooks.clone(),
            mailer,
            uploader: Uploader::new(&self.extra_roots, self.allow_private)?,
        })
    }
}

/// The three transports.
#[derive(Clone)]
pub struct Transports {
    pub webhooks: Webhooks,
    /// None when the server has no SMTP relay (`--smtp-url`, `--smtp-from`).
    pub mailer: Option<Mailer>,
    pub uploader: Uploader,
}

/// What one send goes out with: events as (id, stored JSON), oldest first,
/// and for a period's mail or file its fixed name and period start.
pub struct Unit<'a> {
    pub events: &'a [(&'a str, &'a str)],
    pub parcel: Option<Parcel<'a>>,
}

pub struct Parcel<'a> {
    pub trigger: &'a str,
    /// The file name (FTP) or attachment name (digest), fixed when the
    /// period closed so a retry sends the same.
    pub label: &'a str,
    pub period_start_ms: i64,
}

/// How a send ended, as the attempt log records it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// URL, relay and recipients, or FTP location (never a password).
    pub target: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
    pub kind: OutcomeKind,
}

fn refused(target: String, error: String) -> Sent {
    Sent {
        target,
        status_code: None,
        latency_ms: 0,
        error: Some(error),
        response: None,
        kind: OutcomeKind::Failure,
    }
}

fn mail_sent(target: String, a: MailAnswer) -> Sent {
    Sent {
        target,
        status_code: a.code.map(i64::from),
        latency_ms: a.latency_ms,
        error: a.error,
        response: a.reply,
        kind: match a.outcome {
            MailOutcome::Sent => OutcomeKind::Success,
            MailOutcome::Transient => OutcomeKind::Transient,
            MailOutcome::Permanent => OutcomeKind::Failure,
        },
    }
}

impl Transports {
    pub async fn send(&self, settings: &DeliverySettings, secrets: &[String], unit: Unit<'_>) -> Sent {
        match settings {
            DeliverySettings::Http(http) => {
                let prepared = prepare(http, unit.events);
                let answer = self.webhooks.send(&prepared, http, secrets).await;
                let kind = if answer.is_success() {
                    OutcomeKind::Success
                } else if answer.status == Some(410) {
                    OutcomeKind::Gone
                } else if let Some(d) = answer.retry_after {
                    OutcomeKind::RetryAfter(crate::domain::time::now_ms() + i64::try_from(d.as_millis()).unwrap_or(0))
                } else {
                    OutcomeKind::Failure
                };
                Sent {
                    target: prepared.url,
                    status_code: answer.status.map(i64::from),
                    latency_ms: answer.latency_ms,
                    error: answer.error,
                    response: answer.response,
                    kind,
                }
            }
            DeliverySettings::Email(email) => {
                let Some(mailer) = &self.mailer else {
                    return Sent {
                        kind: OutcomeKind::Transient,
                        ..refused(
                            format!("smtp (not configured) to {}", email.to.join(", ")),
                            "this server has no SMTP relay: start it with --smtp-url and --smtp-from".into(),
                        )
                    };
                };
                let target = mailer.target(email);
                let events = export::parse_events(unit.events.iter().map(|(_, p)| *p));
                let message = match (&unit.parcel, events.as_slice()) {
                    (Some(p), _) => mailer.digest_mail(email, p.trigger, &events, p.label, p.period_start_ms),
                    (None, [event]) => mailer.event_mail(email, event),
                    (None, _) => Err(anyhow::anyhow!("a mail per event carries exactly one event")),
                };
                match message {
                    Ok(m) => mail_sent(target, mailer.send(m).await),
                    Err(e) => refused(target, format!("cannot build the mail: {e}")),
                }
            }
            DeliverySettings::Ftp(ftp) => {
                let Some(parcel) = &unit.parcel else {
                    return refused(Uploader::target(ftp, "?"), "an FTP file needs its period".into());
                };
                let payloads: Vec<&str> = unit.events.iter().map(|(_, p)| *p).collect();
                let body = export::file_body(ftp.format, &payloads);
                let a = self.uploader.upload(ftp, parcel.label, &body).await;
                Sent {
                    target: Uploader::target(ftp, parcel.label),
                    status_code: a.code.map(i64::from),
                    latency_ms: a.latency_ms,
                    error: a.error,
                    response: a.reply,
                    kind: if a.success {
                        OutcomeKind::Success
                    } else {
                        OutcomeKind::Failure
                    },
                }
            }
        }
    }
}

/// A sample event for `POST /v1/triggers/{T}/test`.
pub fn sample_event(trigger: crate::domain::Trigger) -> Event {
    let now = crate::domain::time::now_ms();
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        trigger,
        occurred_at: crate::domain::time::rfc3339(now),
        received_at: crate::domain::time::rfc3339(now),
        recipient: Some("test@example.com".into()),
        campaign_id: None,
        message_id: None,
        list_id: None,
        url: None,
        bounce_type: None,
        bounce_reason: None,
        ip: None,
        user_agent: None,
        external_id: None,
        data: Some(serde_json::Map::from_iter([(
            "test".to_string(),
            serde_json::json!(true),
        )])),
    }
}
