-- Bumped whenever the configuration changes or the destination is resumed:
-- results of requests sent with an older configuration do not count.
ALTER TABLE push_destinations ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;
