//! Request plumbing shared by the JSON handlers: the caller's identity and
//! size-limited, typed JSON bodies with clear errors.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::auth::{Credentials, Principal};
use crate::body::{content_type, BodyError};
use crate::state::AppState;
use crate::store::accounts::Account;

pub fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered by startup")
}

fn credentials(req: &HttpRequest) -> Option<Credentials> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::from_header)
}

async fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let st = state(req);
    let creds = credentials(req);
    let auth = st.auth.clone();
    let client = req.peer_addr().map(|a| a.ip());
    blocking(move || auth.authenticate(creds.as_ref(), client)).await
}

/// Runs blocking work (database calls) off the async workers. Its error
/// becomes the JSON error through `From` (SPEC §7: unknown row 404, database
/// unavailable 503, …); a handler that means something else by an error maps
/// it inside `work` (e.g. with [`super::error::not_found_as`]).
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    web::block(work)
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(Into::into)
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// Authenticates the caller and lets `accept` take the principal or refuse it.
fn extract_principal<T: 'static>(req: &HttpRequest, accept: fn(Principal) -> Result<T, ApiError>) -> Extracted<T> {
    let req = req.clone();
    Box::pin(async move { accept(authenticate(&req).await?) })
}

/// The calling account (an API key). The operator token is refused here.
pub struct AccountAuth(pub Account);

fn account_only(p: Principal) -> Result<AccountAuth, ApiError> {
    match p {
        Principal::Account(a) => Ok(AccountAuth(a)),
        Principal::Operator => Err(ApiError::forbidden(
            "account_key_required",
            "this endpoint needs an account's API key, not the operator token",
        )),
    }
}

impl FromRequest for AccountAuth {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_principal(req, account_only)
    }
}

/// The calling account for ingest, like [`AccountAuth`], but a key verified
/// before is taken from the cache of verified keys (no database query, no
/// blocking thread); `key_hash` goes with the events, and the ingest
/// transaction checks that the key is still live (`auth/key_cache.rs`).
pub struct IngestAuth {
    pub account: Account,
    pub key_hash: String,
}

impl FromRequest for IngestAuth {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req);
            let creds = credentials(&req);
            let client = req.peer_addr().map(|a| a.ip());
            if let Some(hit) = st.auth.cached_key(creds.as_ref(), client) {
                let (account, key_hash) = hit?;
                return Ok(IngestAuth { account, key_hash });
            }
            let AccountAuth(account) = account_only(authenticate(&req).await?)?;
            // (Authenticated, so there were credentials.)
            let secret = creds.as_ref().map_or("", Credentials::secret);
            let key_hash = st.auth.remember(secret, &account);
            Ok(IngestAuth { account, key_hash })
        })
    }
}

/// The operator. Account keys are refused here.
pub struct OperatorAuth;

impl FromRequest for OperatorAuth {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract_principal(req, |p| match p {
            Principal::Operator => Ok(OperatorAuth),
            Principal::Account(_) => Err(ApiError::forbidden(
                "operator_required",
                "this endpoint needs the operator token (EVENTD_ADMIN_TOKEN)",
            )),
        })
    }
}

/// Reads the body up to the configured limit. `Ok(None)` when it is empty.
pub async fn read_json(req: &HttpRequest, payload: web::Payload) -> Result<Option<Value>, ApiError> {
    let st = state(req);
    let body = st
        .bodies
        .read(req, payload, st.settings.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => ApiError::too_large("body_too_large", e.to_string()),
            BodyError::Unreadable(_) => ApiError::bad_request("bad_body", e.to_string()),
            BodyError::TimedOut(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string()),
            BodyError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
        })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let ct = content_type(req);
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !(mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as Content-Type: application/json (got '{ct}')"),
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")))
}

/// Converts a JSON value to a request type; wrong shapes are 422.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::unprocessable("invalid_request", e.to_string()))
}
