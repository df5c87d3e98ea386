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
