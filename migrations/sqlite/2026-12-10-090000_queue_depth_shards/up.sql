-- Each ingest writer adds to queue_depth rows of its own (shard 1, 2, ...),
-- everything else (mark read, retention) to shard 0; readers add the shards
-- up. (It matters on PostgreSQL, where a node has two writers; SQLite has
-- one, and the same schema keeps one code path.)
CREATE TABLE queue_depth_sharded (
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    shard SMALLINT NOT NULL DEFAULT 0,
    events BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger, shard)
);
INSERT INTO queue_depth_sharded (account_id, trigger, shard, events)
    SELECT account_id, trigger, 0, events FROM queue_depth;
DROP TABLE queue_depth;
ALTER TABLE queue_depth_sharded RENAME TO queue_depth;
