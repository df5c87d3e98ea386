ALTER TABLE batches DROP COLUMN trigger_counts;
ALTER TABLE batches DROP COLUMN pieces;
DROP INDEX pull_queue_trigger;
DROP TABLE queue_depth;
