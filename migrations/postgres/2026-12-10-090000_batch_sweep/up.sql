-- Batches by state: the sweeper finds the batches marked read whose rows
-- are not deleted yet (state 'acked'), and a claim finds an account's open
-- and unswept batches, without walking every batch kept for idempotency.
CREATE INDEX batches_state ON batches (state, account_id);
