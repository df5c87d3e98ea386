-- Per-minute activity counters per account and trigger (GET /v1/stats).
-- Written by periodic flushes of in-memory counters (adding to a row when
-- another node flushed the same minute); pruned with the event history.
CREATE TABLE activity (
    account_id BIGINT NOT NULL,
    minute BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    ingested BIGINT NOT NULL DEFAULT 0,
    pulled BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, minute, trigger)
);
