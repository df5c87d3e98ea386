DROP INDEX deliveries_event;
ALTER TABLE deliveries ADD COLUMN payload TEXT NOT NULL DEFAULT '';
UPDATE deliveries d SET payload = e.payload FROM events e
    WHERE e.account_id = d.account_id AND e.id = d.event_id AND d.label IS NULL;
ALTER TABLE pull_queue ADD COLUMN payload TEXT NOT NULL DEFAULT '';
UPDATE pull_queue q SET payload = e.payload FROM events e
    WHERE e.account_id = q.account_id AND e.id = q.event_id;
ALTER TABLE pull_queue DROP COLUMN event_id;
ALTER TABLE events DROP COLUMN seq;
