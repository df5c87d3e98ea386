//! `GET /v1/stats`: the account's activity per time bucket (events
//! ingested, pulled, pushed delivered / failed), in total and per trigger,
//! from the per-minute counters (`crate::activity`).

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{blocking, state, AccountAuth};
use crate::domain::time::{now_ms, parse_rfc3339, rfc3339};

const MINUTE_MS: i64 = 60_000;
/// Most buckets one answer holds (a day per minute).
pub const MAX_BUCKETS: i64 = 1440;
const DEFAULT_SPAN_MS: i64 = 3_600_000;
/// Largest bucket: 31 days.
const MAX_STEP_SECONDS: i64 = 31 * 86_400;

/// The time range and bucket size.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start (RFC 3339), rounded down to the minute; default `to` minus one hour.
    from: Option<String>,
    /// End (RFC 3339, exclusive), rounded up to the minute; default now.
    to: Option<String>,
    /// Bucket size in seconds, a multiple of 60 (default 60); at most
    /// 1,440 buckets per answer.
    step: Option<i64>,
}

/// Counts of one bucket.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket (RFC 3339).
    pub start: String,
    /// Events accepted (duplicates not counted).
    pub ingested: i64,
    /// Pull events deleted by a mark-read.
    pub pulled: i64,
    /// Push deliveries sent successfully.
    pub delivered: i64,
    /// Push deliveries whose request failed (each failed try counts).
    pub failed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    pub from: String,
    pub to: String,
    pub step_seconds: i64,
    /// Every bucket from `from` to `to`, all triggers together.
    pub buckets: Vec<Bucket>,
    /// The same buckets per trigger, for triggers with any activity in the range.
    pub triggers: BTreeMap<String, Vec<Bucket>>,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("bad_query", message)
}

fn time(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|s| parse_rfc3339(s).ok_or_else(|| bad(format!("'{name}' must be an RFC 3339 time, got '{s}'"))))
        .transpose()
}

/// The range as (from, to, step) in ms, checked.
fn range(q: &StatsQuery, now: i64) -> Result<(i64, i64, i64), ApiError> {
    let step_s = q.step.unwrap_or(60);
    if !(60..=MAX_STEP_SECONDS).contains(&step_s) || step_s % 60 != 0 {
        return Err(bad(format!(
            "'step' must be a multiple of 60 seconds up to {MAX_STEP_SECONDS}, got {step_s}"
        )));
    }
    let step = step_s * 1000;
    let to = time("to", q.to.as_deref())?.unwrap_or(now);
    let to = to.div_euclid(MINUTE_MS) * MINUTE_MS + if to % MINUTE_MS == 0 { 0 } else { MINUTE_MS };
    let from = time("from", q.from.as_deref())?.unwrap_or(to - DEFAULT_SPAN_MS);
    let from = from.div_euclid(MINUTE_MS) * MINUTE_MS;
    if from >= to {
        return Err(bad("'from' must be before 'to'".into()));
    }
    let buckets = (to - from + step - 1) / step;
    if buckets > MAX_BUCKETS {
        return Err(bad(format!(
            "{buckets} buckets asked; at most {MAX_BUCKETS}: use a larger 'step' or a shorter range"
        )));
    }
    Ok((from, from + buckets * step, step))
}

/// Activity per time bucket: ingested, pulled, delivered and failed pushes.
#[utoipa::path(get, path = "/v1/stats", operation_id = "activity_stats", tag = "stats",
    security(("bearer" = []), ("basic" = [])), params(StatsQuery),
    responses(
        (status = 200, body = StatsView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn stats(
    AccountAuth(account): AccountAuth,
    req: HttpRequest,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to, step) = range(&query, now_ms())?;
    let store = state(&req).store.clone();
    let rows = blocking(move || store.activity(account.id, from, to, step)).await?;
    let n = ((to - from) / step) as usize;
    let empty: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: rfc3339(from + i as i64 * step),
            ..Bucket::default()
        })
        .collect();
    let mut total = empty.clone();
    let mut triggers: BTreeMap<String, Vec<Bucket>> = BTreeMap::new();
    for r in rows {
        let Some(i) = usize::try_from(r.bucket).ok().filter(|i| *i < n) else {
            continue;
        };
        let per = triggers.entry(r.trigger).or_insert_with(|| empty.clone());
        for b in [&mut total[i], &mut per[i]] {
            b.ingested += r.ingested;
            b.pulled += r.pulled;
            b.delivered += r.delivered;
            b.failed += r.failed;
        }
    }
    Ok(HttpResponse::Ok().json(StatsView {
        from: rfc3339(from),
        to: rfc3339(to),
        step_seconds: step / 1000,
        buckets: total,
        triggers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, step: Option<i64>) -> StatsQuery {
        StatsQuery {
            from: from.map(String::from),
            to: to.map(String::from),
            step,
        }
    }

    #[test]
    fn ranges_round_to_minutes_and_refuse_bad_steps() {
        let now = parse_rfc3339("2026-12-06T12:00:30Z").unwrap();
        let (from, to, step) = range(&q(None, None, None), now).unwrap();
        assert_eq!(
            (rfc3339(from), rfc3339(to), step),
            (
                "2026-12-06T11:01:00.000Z".to_string(),
                "2026-12-06T12:01:00.000Z".to_string(),
                60_000
            )
        );
        let (from, to, _) = range(
            &q(Some("2026-12-06T00:00:00Z"), Some("2026-12-06T01:00:00Z"), Some(600)),
            now,
        )
        .unwrap();
        assert_eq!((to - from) / 600_000, 6);
        for step in [0, 59, 90, -60, i64::MAX] {
            assert!(range(&q(None, None, Some(step)), now).is_err(), "{step}");
        }
        assert!(
            range(&q(Some("2026-12-01T00:00:00Z"), None, Some(60)), now).is_err(),
            "too many buckets"
        );
        assert!(
            range(&q(Some("2026-12-07T00:00:00Z"), None, None), now).is_err(),
            "from after to"
        );
        assert!(range(&q(Some("yesterday"), None, None), now).is_err());
    }
}
