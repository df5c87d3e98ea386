-- Email and FTP destinations (SPEC §6) share the delivery pipeline of HTTP
-- push. A destination is now (account, trigger, transport): deliveries
-- accepted for one transport stay with it when the trigger switches.
ALTER TABLE push_destinations ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
ALTER TABLE push_destinations DROP CONSTRAINT push_destinations_pkey;
ALTER TABLE push_destinations ADD PRIMARY KEY (account_id, trigger, transport);

ALTER TABLE deliveries ADD COLUMN transport TEXT NOT NULL DEFAULT 'http';
-- Email digests and FTP files: an event waits as an 'open' row until its
-- period ends (next_at); then the period's rows become members ('batched',
-- parcel_id) of one delivery row per mail or file, which carries
-- event_count, the period start and its fixed name (label: file name or
-- Message-ID), so a retry sends the same thing.
ALTER TABLE deliveries ADD COLUMN parcel_id BIGINT;
ALTER TABLE deliveries ADD COLUMN event_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN period_start BIGINT;
ALTER TABLE deliveries ADD COLUMN label TEXT;
CREATE INDEX deliveries_open ON deliveries (account_id, trigger, transport, next_at, id) WHERE status = 'open';
CREATE INDEX deliveries_parcel ON deliveries (account_id, parcel_id) WHERE parcel_id IS NOT NULL;
CREATE INDEX deliveries_periods ON deliveries (account_id, trigger, transport, period_start) WHERE period_start IS NOT NULL;
