-- Email and FTP destinations (SPEC §6) share the delivery pipeline of HTTP
-- push. A destination is now (account, trigger, transport): deliveries
-- accepted for one transport stay with it when the trigger switches.
-- SQLite cannot change a primary key: the table is rebuilt.
CREATE TABLE push_destinations_new (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    trigger TEXT NOT NULL,
    transport TEXT NOT NULL DEFAULT 'http',
    settings TEXT NOT NULL,
    secret TEXT NOT NULL,
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
    config_version BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, trigger, transport)
);
INSERT INTO push_destinations_new (account_id, trigger, transport, settings, secret, previous_secret,
    previous_until, state, consecutive_failures, paused_until, last_error, last_error_at, suspended_at,
    created_at, updated_at, config_version)
SELECT account_id, trigger, 'http', settings, secret, previous_secret, previous_until, state,
    consecutive_failures, paused_until, last_error, last_error_at, suspended_at, created_at, updated_at,
    config_version
FROM push_destinations;
DROP TABLE push_destinations;
ALTER TABLE push_destinations_new RENAME TO push_destinations;

ALTER TABLE deliveries ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
-- Email digests and FTP files: an event waits as an 'open' row until its
-- period ends (next_at); then the period's rows become members ('batched',
-- parcel_id) of one delivery row per mail or file, which carries
-- event_count, the period start and its fixed name (label: file name or
-- Message-ID), so a retry sends the same thing.
ALTER TABLE deliveries ADD COLUMN parcel_id BIGINT;
ALTER TABLE deliveries ADD COLUMN event_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN period_start BIGINT;
ALTER TABLE deliveries ADD COLUMN label TEXT;
CREATE INDEX deliveries_open ON deliveries (account_id, trigger, transport, next_at, id) WHERE status = 'open';
CREATE INDEX deliveries_parcel ON deliveries (account_id, parcel_id) WHERE parcel_id IS NOT NULL;
CREATE INDEX deliveries_periods ON deliveries (account_id, trigger, transport, period_start) WHERE period_start IS NOT NULL;
