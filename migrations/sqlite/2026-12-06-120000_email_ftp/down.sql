DROP INDEX deliveries_periods;
DROP INDEX deliveries_parcel;
DROP INDEX deliveries_open;
DELETE FROM deliveries WHERE transport <> 'http';
ALTER TABLE deliveries DROP COLUMN label;
ALTER TABLE deliveries DROP COLUMN period_start;
ALTER TABLE deliveries DROP COLUMN event_count;
ALTER TABLE deliveries DROP COLUMN parcel_id;
ALTER TABLE deliveries DROP COLUMN transport;
DELETE FROM push_destinations WHERE transport <> 'http';
CREATE TABLE push_destinations_old AS SELECT * FROM push_destinations;
DROP TABLE push_destinations;
CREATE TABLE push_destinations (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    trigger TEXT NOT NULL,
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
    PRIMARY KEY (account_id, trigger)
);
INSERT INTO push_destinations SELECT account_id, trigger, settings, secret, previous_secret, previous_until,
    state, consecutive_failures, paused_until, last_error, last_error_at, suspended_at, created_at,
    updated_at, config_version FROM push_destinations_old;
DROP TABLE push_destinations_old;
