CREATE TABLE pull_queue_rowid (
    seq INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    event_id TEXT NOT NULL DEFAULT ''
);
INSERT INTO pull_queue_rowid (seq, account_id, trigger, received_at, event_id)
    SELECT seq, account_id, trigger, received_at, event_id FROM pull_queue;
DROP TABLE pull_queue;
ALTER TABLE pull_queue_rowid RENAME TO pull_queue;
CREATE INDEX pull_queue_account_seq ON pull_queue (account_id, seq);
CREATE INDEX pull_queue_trigger ON pull_queue (account_id, trigger, seq);
DROP TABLE queue_seq;
