CREATE TEMPORARY TABLE queue_depth_sum AS
    SELECT account_id, trigger, SUM(events)::BIGINT AS events FROM queue_depth GROUP BY account_id, trigger;
DELETE FROM queue_depth;
ALTER TABLE queue_depth DROP CONSTRAINT queue_depth_pkey;
ALTER TABLE queue_depth DROP COLUMN shard;
ALTER TABLE queue_depth ADD PRIMARY KEY (account_id, trigger);
INSERT INTO queue_depth (account_id, trigger, events) SELECT account_id, trigger, events FROM queue_depth_sum;
DROP TABLE queue_depth_sum;
