//! Request bodies read with a size limit and a deadline, for every face
//! (JSON, SOAP, PAINT): a declared Content-Length over the limit is refused
//! before anything is read, a streamed body as soon as it passes the limit,
//! a body still arriving after `--body-timeout` is cut off (a client that
//! trickles bytes cannot hold a connection), and bodies over
//! [`LARGE_BODY`] take one of `--max-large-bodies` permits while they are
//! read and parsed, so memory stays bounded however many arrive at once.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bodies larger than this need a permit.
pub const LARGE_BODY: usize = 1024 * 1024;

/// Why a body was not read (all are the caller's doing, or load).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("could not read the body: {0}")]
    Unreadable(String),
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("too many large request bodies are being read at once; retry shortly")]
    Busy,
}

/// How bodies are read: the deadline and the permits for large ones.
#[derive(Clone)]
pub struct Bodies {
    timeout: Duration,
    large: Arc<Semaphore>,
}

/// A body read in full. Holding it holds its large-body permit, if any,
/// so a caller keeps the permit while it parses the bytes.
pub struct Body {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Bodies {
    pub fn new(timeout: Duration, max_large: usize) -> Self {
        Bodies {
            timeout,
            large: Arc::new(Semaphore::new(max_large.max(1))),
        }
    }

    /// Reads the whole request body, at most `limit` bytes, within the
    /// deadline (waiting for a large-body permit counts in it).
    pub async fn read(&self, req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Body, BodyError> {
        let deadline = Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, self.read_all(req, payload, limit, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(BodyError::TimedOut(self.timeout)),
        }
    }

    async fn permit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, BodyError> {
        // Waiting ends a little before the deadline, so a queued client
        // hears "busy" (retry) rather than "too slow".
        let wait = deadline - Duration::from_millis(self.timeout.as_millis().min(1000) as u64 / 2);
        match tokio::time::timeout_at(wait, self.large.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(BodyError::Busy),
        }
    }

    async fn read_all(
        &self,
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: usize,
        deadline: Instant,
    ) -> Result<Body, BodyError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge(limit));
        }
        let mut permit = None;
        if declared.is_some_and(|n| n > LARGE_BODY) {
            permit = Some(self.permit(deadline).await?);
        }
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit).min(LARGE_BODY));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if permit.is_none() && body.len() + chunk.len() > LARGE_BODY {
                permit = Some(self.permit(deadline).await?);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: body.freeze(),
            _permit: permit,
        })
    }
}

/// The request's Content-Type header value ("" if none).
pub fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
