-- SQLite only: PostgreSQL's queue seqs come from a sequence, never given out twice,
-- and its pull_queue is already keyed by (account_id, seq).
SELECT 1;
