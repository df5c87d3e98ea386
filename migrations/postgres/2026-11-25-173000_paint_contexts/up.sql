-- PAINT compatibility (src/paint): login contexts. A context belongs to one
-- account; `id` is the SHA-256 of the context id handed to the client (the
-- client's id carries the account id, so every lookup names the account).
CREATE TABLE paint_contexts (
    account_id BIGINT NOT NULL,
    id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);
