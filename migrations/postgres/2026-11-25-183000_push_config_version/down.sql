ALTER TABLE push_destinations DROP COLUMN config_version;
