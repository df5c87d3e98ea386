DROP INDEX deliveries_event;
ALTER TABLE deliveries ADD COLUMN payload TEXT NOT NULL DEFAULT '';
UPDATE deliveries SET payload = COALESCE((SELECT e.payload FROM events e
    WHERE e.account_id = deliveries.account_id AND e.id = deliveries.event_id), '')
    WHERE label IS NULL;
ALTER TABLE pull_queue ADD COLUMN payload TEXT NOT NULL DEFAULT '';
UPDATE pull_queue SET payload = COALESCE((SELECT e.payload FROM events e
    WHERE e.account_id = pull_queue.account_id AND e.id = pull_queue.event_id), '');
ALTER TABLE pull_queue DROP COLUMN event_id;
ALTER TABLE events DROP COLUMN seq;
