//! The SMTP transport of email destinations, shared by the delivery worker
//! and `POST /v1/triggers/{T}/test`: one server-wide relay (`--smtp-url`,
//! `--smtp-from`, lettre over rustls), the mails themselves (one per event,
//! or a digest with a CSV attachment), and the classification of the
//! relay's answer: 2xx sent, 4xx or no connection transient, 5xx permanent.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::event::Event;
use crate::domain::export;
use crate::domain::EmailSettings;

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply text kept in the attempt log.
const MAX_REPLY: usize = 1024;

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// 4xx, or the relay could not be reached: tried again on the schedule,
    /// not held against the destination (the relay is the operator's).
    Transient,
    /// 5xx: the relay refused this mail.
    Permanent,
}

#[derive(Debug, Clone)]
pub struct MailAnswer {
    pub outcome: MailOutcome,
    /// The SMTP reply code, when the relay answered.
    pub code: Option<u16>,
    /// The relay's reply text (success) or the error with its text.
    pub reply: Option<String>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

/// The server-wide SMTP relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The relay URL without credentials (for the attempt log).
    relay: String,
    /// For Message-IDs: the domain of the From address.
    domain: String,
}

/// `smtp://[user:password@]host[:port][?tls=starttls|opportunistic]` or
/// `smtps://…` (TLS from the first byte).
fn transport(url: &str, extra_roots: &[Vec<u8>]) -> anyhow::Result<(AsyncSmtpTransport<Tokio1Executor>, String)> {
    let u = url::Url::parse(url).context("--smtp-url is not a URL")?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .context("--smtp-url has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let mut mode = None;
    for (k, v) in u.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("tls", m @ ("starttls" | "opportunistic" | "none")) => mode = Some(m.to_string()),
            ("tls", other) => bail!("--smtp-url: tls={other} is not starttls, opportunistic or none"),
            (other, _) => bail!("--smtp-url: unknown parameter '{other}' (only tls=… is understood)"),
        }
    }
    let tls_params = || -> anyhow::Result<TlsParameters> {
        let mut b = TlsParameters::builder(host.clone());
        for der in extra_roots {
            b = b.add_root_certificate(Certificate::from_der(der.clone()).context("--tls-ca-file")?);
        }
        b.build_rustls().context("SMTP TLS settings")
    };
    let (tls, default_port) = match (u.scheme(), mode.as_deref()) {
        ("smtps", None) => (Tls::Wrapper(tls_params()?), 465),
        ("smtps", Some(_)) => bail!("--smtp-url: smtps:// is TLS already; tls=… is for smtp://"),
        ("smtp", None | Some("none")) => (Tls::None, 25),
        ("smtp", Some("starttls")) => (Tls::Required(tls_params()?), 587),
        ("smtp", Some(_)) => (Tls::Opportunistic(tls_params()?), 587),
        (other, _) => bail!("--smtp-url must start with smtp:// or smtps://, not {other}://"),
    };
    let port = u.port().unwrap_or(default_port);
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if !u.username().is_empty() {
        let decode = |s: &str| percent_decode(s);
        b = b.credentials(Credentials::new(
            decode(u.username()),
            decode(u.password().unwrap_or_default()),
        ));
    }
    let shown = format!("{}://{host}:{port}", u.scheme());
    Ok((b.build(), shown))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// At most MAX_REPLY bytes of `s`, cut at a character boundary.
fn clip(mut s: String) -> String {
    s.truncate(s.floor_char_boundary(MAX_REPLY));
    s
}

impl Mailer {
    /// `extra_roots`: DER certificates trusted besides the usual roots.
    /// Must be called inside the tokio runtime that will send (the
    /// connection pool lives there).
    pub fn new(url: &str, from: &str, extra_roots: &[Vec<u8>]) -> anyhow::Result<Mailer> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("--smtp-from '{from}' is not an email address"))?;
        let domain = from.email.domain().to_string();
        let (transport, relay) = transport(url, extra_roots)?;
        Ok(Mailer {
            transport,
            from,
            relay,
            domain,
        })
    }

    /// What the attempt log shows as the target: the relay and the recipients.
    pub fn target(&self, settings: &EmailSettings) -> String {
        format!("{} to {}", self.relay, settings.to.join(", "))
    }

    fn builder(
        &self,
        settings: &EmailSettings,
        subject: String,
        message_id: String,
    ) -> lettre::message::MessageBuilder {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{message_id}>")))
            .date(SystemTime::now());
        for to in &settings.to {
            if let Ok(m) = to.parse::<Mailbox>() {
                b = b.to(m);
            }
        }
        b
    }

    /// One event: a readable plain-text body, `Message-ID` from the event id.
    pub fn event_mail(&self, settings: &EmailSettings, event: &Event) -> anyhow::Result<Message> {
        let subject = export::event_subject(&settings.subject_prefix, event);
        let id = export::event_message_id(&event.id, &self.domain);
        Ok(self
            .builder(settings, subject, id)
            .header(ContentType::TEXT_PLAIN)
            .body(export::event_text(event))?)
    }

    /// One digest: a summary and the events as a CSV attachment named
    /// `attachment`; the Message-ID comes from the first and last events.
    pub fn digest_mail(
        &self,
        settings: &EmailSettings,
        trigger: &str,
        events: &[Event],
        attachment: &str,
        period_start_ms: i64,
    ) -> anyhow::Result<Message> {
        let (first, last) = match (events.first(), events.last()) {
            (Some(f), Some(l)) => (f.id.as_str(), l.id.as_str()),
            _ => bail!("a digest needs at least one event"),
        };
        let subject = export::digest_subject(&settings.subject_prefix, trigger, events.len(), period_start_ms);
        let id = export::digest_message_id(first, last, &self.domain);
        let csv_type = ContentType::parse("text/csv; charset=utf-8").context("content type")?;
        let body = MultiPart::mixed()
            .singlepart(SinglePart::plain(export::digest_text(events, attachment)))
            .singlepart(Attachment::new(attachment.to_string()).body(export::csv(events), csv_type));
        Ok(self.builder(settings, subject, id).multipart(body)?)
    }

    pub async fn send(&self, message: Message) -> MailAnswer {
        let started = Instant::now();
        let result = self.transport.send(message).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match result {
            Ok(r) => MailAnswer {
                outcome: MailOutcome::Sent,
                code: Some(u16::from(r.code())),
                reply: Some(clip(r.message().collect::<Vec<_>>().join(" "))),
                error: None,
                latency_ms,
            },
            Err(e) => MailAnswer {
                outcome: if e.is_permanent() {
                    MailOutcome::Permanent
                } else {
                    MailOutcome::Transient
                },
                code: e.status().map(u16::from),
                reply: None,
                error: Some(clip(format!("SMTP: {e}"))),
                latency_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn smtp_urls() {
        assert!(Mailer::new("smtp://127.0.0.1:2525", "eventd <noreply@example.com>", &[]).is_ok());
        let m = Mailer::new(
            "smtp://u%40x:p%2Bw@mail.example.com?tls=starttls",
            "noreply@example.com",
            &[],
        )
        .unwrap();
        assert_eq!(m.relay, "smtp://mail.example.com:587");
        assert_eq!(m.domain, "example.com");
        assert_eq!(percent_decode("p%2Bw+x"), "p+w+x");
        assert!(Mailer::new("smtps://mail.example.com", "a@b.test", &[]).is_ok());
        for (url, needle) in [
            ("http://mail.example.com", "smtp://"),
            ("smtp://mail.example.com?tls=maybe", "tls=maybe"),
            ("smtp://mail.example.com?port=1", "unknown parameter"),
            ("smtps://mail.example.com?tls=starttls", "TLS already"),
        ] {
            let err = Mailer::new(url, "a@b.test", &[]).err().unwrap().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
        assert!(Mailer::new("smtp://h", "not an address", &[]).is_err());
    }
}
