-- SQLite only: PostgreSQL's queue seqs come from a sequence, never given out twice.
SELECT 1;
