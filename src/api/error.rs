//! The JSON API's error type: `{"error": {"code", "message", "details"?}}`
//! with the status of SPEC §7.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::store::failure::{STORAGE_FULL_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER};
use crate::store::StoreError;

/// Every error: a stable `code` and a readable `message`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    #[schema(example = "validation_failed")]
    pub code: &'static str,
    pub message: String,
    /// Extra facts, e.g. every invalid field of an ingest by index.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `Retry-After` seconds (429; a 503 says 1 without it).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 503 `database_unavailable` with `Retry-After`: the database cannot
    /// be reached now; nothing was done, the request may be sent again.
    pub fn unavailable() -> Self {
        ApiError {
            retry_after: Some(UNAVAILABLE_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; nothing was done, retry shortly",
            )
        }
    }

    /// 507 `storage_full`: a watermark is reached, no events are accepted
    /// until space is freed (fetching and marking read go on, so consumers
    /// can drain).
    pub fn storage_full() -> Self {
        ApiError {
            retry_after: Some(STORAGE_FULL_RETRY_AFTER),
            ..Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "the server's storage is full: no events are accepted until consumers drain the queue or space is added; fetching and marking read work",
            )
        }
    }

    /// 507 `storage_full`: the database itself is out of space. Any write
    /// may fail (a fetch claims a batch, a mark-read deletes rows), so the
    /// message promises nothing about fetching.
    pub fn out_of_space() -> Self {
        ApiError {
            retry_after: Some(STORAGE_FULL_RETRY_AFTER),
            ..Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "the database is out of space: nothing was done; writes (ingest, and also fetching and marking read) fail until space is added",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed; the request may be retried",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"eventd\""));
        }
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.insert_header((header::RETRY_AFTER, "1"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::PAYLOAD_TOO_LARGE
            || self.code == "busy"
        {
            // The rest of a body refused unread (too slow, too large, no
            // permit) is not drained: the connection is closed instead.
            resp.force_close();
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}

/// What a store's `NotFound` means to one handler (its own 404, e.g. "no
/// such account"); every other store error maps as usual.
pub fn not_found_as(missing: ApiError) -> impl FnOnce(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => missing,
        other => other.into(),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not_found", "no such resource"),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable()
            }
            StoreError::StorageFull(_) => ApiError::storage_full(),
            StoreError::OutOfSpace(_) => ApiError::out_of_space(),
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            AuthError::Invalid => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            AuthError::Limited(wait) => ApiError {
                retry_after: Some(crate::auth::retry_after_secs(wait)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_failures", e.to_string())
            },
            AuthError::Store(s) => s.into(),
        }
    }
}
