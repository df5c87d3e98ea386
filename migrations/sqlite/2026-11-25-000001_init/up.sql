-- Accounts and their API keys (small tables).
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
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

-- Destination per trigger; a missing row means the default (pull).
CREATE TABLE trigger_configs (
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    trigger TEXT NOT NULL,
    destination TEXT NOT NULL,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger)
);

-- Event history (push backfill, replay; pruned after the retention period).
-- The id is a UUIDv7, so (account_id, id) is also time order per account.
CREATE TABLE events (
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    external_id TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_external_id ON events (account_id, external_id)
    WHERE external_id IS NOT NULL;

-- The pull queue: rows are inserted at ingest and deleted when their batch is
-- marked read; never updated (leases live in `batches`).
CREATE TABLE pull_queue (
    seq INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX pull_queue_account_seq ON pull_queue (account_id, seq);

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
);
CREATE INDEX batches_consumer ON batches (account_id, consumer, state);
