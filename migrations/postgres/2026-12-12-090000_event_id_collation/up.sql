-- Event ids and external ids are compared byte by byte (collation "C")
-- instead of by the database's locale. Under any other collation (C.UTF-8
-- and en_US.UTF-8 included) PostgreSQL compares text through strcoll():
-- a range read of 10,000 events by id took 6.7-7.0 ms against 4.2 ms,
-- and an insert of 100,000 events 450-570 ms against 385-420 ms
-- (docs/PERFORMANCE.md, ninth session). The ids are ASCII (UUIDv7 and
-- client-given ids), so their order does not change. The columns compared
-- with events.id change together (a comparison of two different implicit
-- collations is an error). Indexes on them are rebuilt; tables are not
-- rewritten.
ALTER TABLE events
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN external_id TYPE TEXT COLLATE "C";
ALTER TABLE pull_queue ALTER COLUMN event_id TYPE TEXT COLLATE "C";
ALTER TABLE deliveries ALTER COLUMN event_id TYPE TEXT COLLATE "C";
