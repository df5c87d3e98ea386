ALTER TABLE deliveries ALTER COLUMN event_id TYPE TEXT COLLATE "default";
ALTER TABLE pull_queue ALTER COLUMN event_id TYPE TEXT COLLATE "default";
ALTER TABLE events
    ALTER COLUMN external_id TYPE TEXT COLLATE "default",
    ALTER COLUMN id TYPE TEXT COLLATE "default";
