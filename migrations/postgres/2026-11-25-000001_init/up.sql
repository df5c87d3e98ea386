-- Every table carries account_id and every key includes it, so the schema can
-- be distributed by account (Citus) when one server is no longer enough.
-- accounts and api_keys are small lookup tables (Citus reference tables).
CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE trigger_configs (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    trigger TEXT NOT NULL,
    destination TEXT NOT NULL,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger)
);

CREATE TABLE events (
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    external_id TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX events_external_id ON events (account_id, external_id)
    WHERE external_id IS NOT NULL;

-- The pull queue: insert-only, rows deleted when their batch is marked read
-- (never updated: leases live in `batches`). Mark-read deletes everything it
-- claimed, so dead tuples are constant: aggressive autovacuum vacuums them
-- continuously instead of in rare huge passes.
CREATE TABLE pull_queue (
    account_id BIGINT NOT NULL,
    seq BIGSERIAL NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITH (autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);

CREATE TABLE batches (
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    consumer TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    -- JSON array of the member seqs while the batch is open; [] once closed.
    seqs TEXT NOT NULL,
    closed_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, id)
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);
CREATE INDEX batches_consumer ON batches (account_id, consumer, state);
