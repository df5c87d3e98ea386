//! What a PAINT call answers: `result` and `resultData`, or for a
//! throttled client, an unreachable database or one out of space a SOAP
//! fault with its own HTTP status and `Retry-After`.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use crate::auth::{retry_after_secs, AuthError};
use crate::soapxml::envelope::{FaultCode, SoapVersion};
use crate::soapxml::http as soaphttp;
use crate::soapxml::map::MapValue;
use crate::store::failure::{STORAGE_FULL_RETRY_AFTER, UNAVAILABLE_RETRY_AFTER};
use crate::store::StoreError;

/// What `result` says, and `resultData`.
pub(super) enum Outcome {
    Success(MapValue),
    /// Field → message, as PAINT clients expect for validation errors.
    Validation(Vec<(String, MapValue)>),
    Security(String),
    System(String),
    /// The client address failed to authenticate too often: HTTP 429.
    Limited(std::time::Duration),
    /// The database cannot be reached: a Server fault with HTTP 503.
    Unavailable,
    /// The database is out of space (a login or getBatch writes): a Server
    /// fault with HTTP 507, as the SOAP service answers.
    OutOfSpace,
}

impl Outcome {
    /// Our own failure, with nothing more to say to the caller.
    pub(super) fn failed() -> Outcome {
        Outcome::System("the server failed; the request may be retried".into())
    }

    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Outcome {
        Outcome::Validation(vec![(field.to_string(), MapValue::Str(message.into()))])
    }

    pub(super) fn into_map(self) -> MapValue {
        let (result, data) = match self {
            Outcome::Success(d) => ("success", d),
            Outcome::Validation(errors) => ("bean_exception_validation", MapValue::Map(errors)),
            Outcome::Security(m) => ("bean_exception_security", MapValue::Str(m)),
            Outcome::System(m) => ("bean_exception_system", MapValue::Str(m)),
            Outcome::Limited(w) => (
                "bean_exception_security",
                MapValue::Str(AuthError::Limited(w).to_string()),
            ),
            Outcome::Unavailable => ("bean_exception_system", MapValue::str(UNAVAILABLE)),
            Outcome::OutOfSpace => ("bean_exception_system", MapValue::str(OUT_OF_SPACE)),
        };
        MapValue::map(vec![("result", MapValue::str(result)), ("resultData", data)])
    }

    /// The answer of a call that is not a result: 429 for a throttled
    /// client, a Server fault with 503 while the database is unreachable,
    /// with 507 while it is out of space.
    pub(super) fn http_fault(&self, v: SoapVersion) -> Option<HttpResponse> {
        let (status, code, message, wait) = match self {
            Outcome::Limited(w) => (
                StatusCode::TOO_MANY_REQUESTS,
                FaultCode::Client,
                AuthError::Limited(*w).to_string(),
                retry_after_secs(*w),
            ),
            Outcome::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                FaultCode::Server,
                UNAVAILABLE.to_string(),
                UNAVAILABLE_RETRY_AFTER,
            ),
            Outcome::OutOfSpace => (
                StatusCode::INSUFFICIENT_STORAGE,
                FaultCode::Server,
                OUT_OF_SPACE.to_string(),
                STORAGE_FULL_RETRY_AFTER,
            ),
            _ => return None,
        };
        let mut r = soaphttp::fault_with_status(v, status, code, &message);
        r.headers_mut().insert(header::RETRY_AFTER, wait.into());
        Some(r)
    }
}

const UNAVAILABLE: &str = "the database is unavailable; nothing was done, retry shortly";
const OUT_OF_SPACE: &str =
    "storage_full: the database is out of space; nothing was done; writes fail until space is added";

pub(super) fn system(e: StoreError) -> Outcome {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "database unavailable");
        return Outcome::Unavailable;
    }
    if e.is_storage_full() {
        tracing::warn!(error = %e, "PAINT request failed: no space");
        return Outcome::OutOfSpace;
    }
    tracing::error!(error = %e, "PAINT request failed");
    Outcome::failed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn header(r: &HttpResponse, name: header::HeaderName) -> Option<String> {
        r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn results_are_named_as_paint_clients_expect() {
        assert_eq!(
            Outcome::invalid("maxNotifications", "at most 10000").into_map(),
            MapValue::map(vec![
                ("result", MapValue::str("bean_exception_validation")),
                (
                    "resultData",
                    MapValue::map(vec![("maxNotifications", MapValue::str("at most 10000"))])
                ),
            ])
        );
        let result = |o: Outcome| match o.into_map() {
            MapValue::Map(items) => items[0].clone(),
            other => panic!("not a map: {other:?}"),
        };
        let ok = MapValue::map(vec![("eventCount", MapValue::Int(0))]);
        assert_eq!(
            result(Outcome::Success(ok)),
            ("result".into(), MapValue::str("success"))
        );
        for (o, name) in [
            (Outcome::Security("bad key".into()), "bean_exception_security"),
            (Outcome::Limited(Duration::from_secs(6)), "bean_exception_security"),
            (Outcome::failed(), "bean_exception_system"),
            (Outcome::Unavailable, "bean_exception_system"),
            (Outcome::OutOfSpace, "bean_exception_system"),
        ] {
            assert_eq!(result(o), ("result".into(), MapValue::str(name)));
        }
    }

    /// README: 429 for a limited client, 503 while the database cannot be
    /// reached, 507 while it is out of space, each with `Retry-After`; any
    /// other outcome is an ordinary answer.
    #[test]
    fn throttled_unreachable_and_full_are_faults_with_their_status() {
        for v in [SoapVersion::V11, SoapVersion::V12] {
            let limited = Outcome::Limited(Duration::from_millis(2500)).http_fault(v).unwrap();
            assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
            // Rounded up: a client that waits that long is let in.
            assert_eq!(header(&limited, header::RETRY_AFTER).as_deref(), Some("3"));
            for (o, status) in [
                (Outcome::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
                (Outcome::OutOfSpace, StatusCode::INSUFFICIENT_STORAGE),
            ] {
                let r = o.http_fault(v).unwrap();
                assert_eq!(r.status(), status);
                let wait: u64 = header(&r, header::RETRY_AFTER).unwrap().parse().unwrap();
                assert!(wait >= 1);
            }
            assert!(Outcome::failed().http_fault(v).is_none());
            assert!(Outcome::Security("bad key".into()).http_fault(v).is_none());
            assert!(Outcome::invalid("size", "too big").http_fault(v).is_none());
        }
    }
}
