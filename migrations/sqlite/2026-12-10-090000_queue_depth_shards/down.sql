CREATE TABLE queue_depth_single (
    account_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (account_id, trigger)
);
INSERT INTO queue_depth_single (account_id, trigger, events)
    SELECT account_id, trigger, SUM(events) FROM queue_depth GROUP BY account_id, trigger;
DROP TABLE queue_depth;
ALTER TABLE queue_depth_single RENAME TO queue_depth;
