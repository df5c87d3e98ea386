-- HTTP push (SPEC §6). SQLite: rowid keys; every query still filters on account_id.

-- One row per trigger that has ever had an http destination: its last http
-- settings (deliveries accepted before a switch to another destination still
-- go there), its signing secret and its health (suspension, Retry-After
-- pause, failure streak).
CREATE TABLE push_destinations (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    trigger TEXT NOT NULL,
    settings TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- After a rotation the previous secret also signs, until previous_until.
    previous_secret TEXT,
    previous_until BIGINT,
    state TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    paused_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at BIGINT,
    suspended_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger)
);

-- One row per event to push, inserted in the ingest transaction. A worker
-- claims due rows by setting lease_until/claimed_by; an expired lease makes
-- the row claimable again.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    lease_until BIGINT,
    claimed_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_destination ON deliveries (account_id, trigger, id) WHERE status = 'pending';
CREATE INDEX deliveries_listing ON deliveries (account_id, trigger, status, id);
-- Pruning of finished deliveries after the log retention.
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'pending';

-- Every attempt: time, URL, status code, latency, error, first 1 KiB of the response.
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL,
    delivery_id BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    url TEXT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    response TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (account_id, delivery_id);
CREATE INDEX delivery_attempts_time ON delivery_attempts (attempted_at);
