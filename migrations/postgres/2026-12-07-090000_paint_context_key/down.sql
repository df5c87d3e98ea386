ALTER TABLE paint_contexts DROP COLUMN key_id;
