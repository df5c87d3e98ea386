-- Maintained depth of the pull queue per account and trigger, updated in
-- the transactions that insert (ingest) and delete (mark read, expiry)
-- queue rows: GET /v1/queue reads these rows instead of counting the queue.
CREATE TABLE queue_depth (
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger)
);
INSERT INTO queue_depth (account_id, trigger, events)
    SELECT account_id, trigger, COUNT(*) FROM pull_queue GROUP BY account_id, trigger;

-- A claim of some triggers seeks each trigger's events in seq order
-- instead of walking past every other trigger's.
CREATE INDEX pull_queue_trigger ON pull_queue (account_id, trigger, seq);

-- What an open batch leases, as seq ranges with trigger sets (JSON
-- [[lo, hi, mask], ...], see src/store/leases.rs), and its member count per
-- trigger (JSON {"OPEN": n, ...}). NULL in batches made before this
-- migration: derived from the member list when needed.
ALTER TABLE batches ADD COLUMN pieces TEXT;
ALTER TABLE batches ADD COLUMN trigger_counts TEXT;
