-- Secrets of the installation, shared by every node (a reference table for
-- Citus: small and global). `delivery_ids`: the AES key that makes the
-- delivery ids the API shows opaque (src/domain/public_id.rs), created by
-- the first server that starts.
CREATE TABLE server_secrets (
    name TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
