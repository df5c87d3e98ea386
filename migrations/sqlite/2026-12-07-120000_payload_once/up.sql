-- Each event's payload is stored once, in the history (`events`): a pull
-- queue row and a delivery reference their event by id instead of holding a
-- copy of its JSON. `events.seq` is the event's seq in the pull queue (NULL
-- when it was not queued), so history retention can tell through the
-- queue's primary key whether the event is still queued.
ALTER TABLE events ADD COLUMN seq BIGINT;
ALTER TABLE pull_queue ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
UPDATE pull_queue SET event_id = COALESCE(
    CASE WHEN json_valid(payload) THEN json_extract(payload, '$.id') END,
    'queued-' || seq);

-- Queued events and deliveries whose history row was already pruned (the
-- history was kept 7 days whatever the queue held) get it back from their
-- own copy. Their external_id is not restored: its idempotency window is over.
INSERT OR IGNORE INTO events (account_id, id, trigger, received_at, external_id, payload, seq)
    SELECT account_id, event_id, trigger, received_at, NULL, payload, seq FROM pull_queue q
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = q.account_id AND e.id = q.event_id);
UPDATE events SET seq = q.seq FROM pull_queue q
    WHERE q.account_id = events.account_id AND q.event_id = events.id;
-- A parcel (digest mail, FTP file) has no payload of its own: its members do.
INSERT OR IGNORE INTO events (account_id, id, trigger, received_at, external_id, payload)
    SELECT account_id, event_id, trigger, MIN(created_at), NULL, MIN(payload) FROM deliveries d
    WHERE label IS NULL
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = d.account_id AND e.id = d.event_id)
    GROUP BY account_id, event_id, trigger;

ALTER TABLE pull_queue DROP COLUMN payload;
ALTER TABLE deliveries DROP COLUMN payload;
-- History retention keeps an event while a delivery refers to it.
CREATE INDEX deliveries_event ON deliveries (account_id, event_id);
