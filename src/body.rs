//! Request bodies read with a size limit, for every face (JSON, SOAP,
//! PAINT): a declared Content-Length over the limit is refused before
//! anything is read, and a streamed body as soon as it passes the limit.

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;

/// Why a body was not read (both are the caller's doing).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("could not read the body: {0}")]
    Unreadable(String),
}

/// Reads the whole request body, at most `limit` bytes.
pub async fn read_limited(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The request's Content-Type header value ("" if none).
pub fn content_type(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
