-- A PAINT context names the API key it was opened with: every call checks
-- that the key is still live, so revoking a key ends its contexts at once,
-- on every node. Contexts opened before this migration name no key and
-- end (their clients log in again, as after an idle timeout).
ALTER TABLE paint_contexts ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
