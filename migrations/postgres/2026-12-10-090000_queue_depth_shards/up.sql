-- Each ingest writer adds to queue_depth rows of its own (shard 1, 2, ...),
-- everything else (mark read, retention) to shard 0; readers add the shards
-- up. With one row per account and trigger, a group commit's depth update
-- waited on the other writer's until that one's commit (its WAL flush)
-- was done, so the two writers of a node never flushed at once.
ALTER TABLE queue_depth ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE queue_depth DROP CONSTRAINT queue_depth_pkey;
ALTER TABLE queue_depth ADD PRIMARY KEY (account_id, trigger, shard);
