-- Fewer index entries per delivery. Marking a delivery delivered changes
-- `status`, so its new row version is not HOT and enters every index whose
-- condition it meets; at 20,000 deliveries a second that was most of
-- PostgreSQL's work (docs/PERFORMANCE.md, "eighth session").
--
-- No query needs `deliveries_due` (the worker probes each destination's
-- pending rows through `deliveries_destination`).
DROP INDEX deliveries_due;
-- Finished deliveries are pruned by a walk of `deliveries_listing`
-- (account, trigger, status, id) in id order, stopping at the first row
-- created after the cutoff.
DROP INDEX deliveries_finished;
-- History retention keeps an event while a delivery still needs its
-- payload: pending, open, batched (a mail's or file's member) or dead (it
-- may be retried). A delivered delivery's log entry no longer keeps it past
-- --history-days.
DROP INDEX deliveries_event;
CREATE INDEX deliveries_event ON deliveries (account_id, event_id) WHERE status <> 'delivered';
-- Attempts are pruned by a walk of their primary key (account, id), which
-- follows the time they were made.
DROP INDEX delivery_attempts_time;
