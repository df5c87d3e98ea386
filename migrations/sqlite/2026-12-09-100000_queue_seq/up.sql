-- Queue seqs are never given out twice. They were the largest seq in
-- `pull_queue` plus one, so a queue drained to empty (or at its tail)
-- numbered its next events with seqs that earlier, deleted events had had:
-- a batch whose lease ran out still listed those seqs, and marking it read
-- late deleted the new events. `queue_seq` holds the last seq given out
-- (the ingest writer takes a range of it in its transaction, like
-- PostgreSQL's sequence); it starts past every seq still named anywhere.
CREATE TABLE queue_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO queue_seq (id, last) SELECT 1, MAX(
    COALESCE((SELECT MAX(seq) FROM pull_queue), 0),
    COALESCE((SELECT MAX(seq) FROM events), 0),
    COALESCE((SELECT MAX(CAST(j.value AS INTEGER)) FROM batches b, json_each(b.seqs) j), 0));

-- The queue keyed by (account_id, seq) itself, without a rowid: one b-tree
-- for the rows and their key instead of a rowid table plus an index on
-- (account_id, seq), so ingest writes and mark-read deletes one b-tree
-- less, and a claim reads its rows straight from the key order.
CREATE TABLE pull_queue_keyed (
    account_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
INSERT INTO pull_queue_keyed (account_id, seq, trigger, received_at, event_id)
    SELECT account_id, seq, trigger, received_at, event_id FROM pull_queue;
DROP TABLE pull_queue;
ALTER TABLE pull_queue_keyed RENAME TO pull_queue;
CREATE INDEX pull_queue_trigger ON pull_queue (account_id, trigger, seq);
