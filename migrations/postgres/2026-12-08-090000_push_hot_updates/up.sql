-- Room on each page of `deliveries` for its rows' next versions, so the
-- claim's `UPDATE … SET lease_until, claimed_by` (no indexed column) stays
-- HOT: no new entry in any of the table's indexes. At fillfactor 70 a page
-- had room for about a third of its rows' new versions, and a claim leases
-- runs of consecutive rows: in a direct-SQL run of the push cycle (claim
-- 128, write the results), 13,609 of 60,000 updates were HOT; at 40, every
-- claim's (30,000). docs/PERFORMANCE.md, "Push end to end". Applies to
-- pages filled from now on.
ALTER TABLE deliveries SET (fillfactor = 40);
