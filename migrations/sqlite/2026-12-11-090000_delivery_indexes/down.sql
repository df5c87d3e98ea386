CREATE INDEX delivery_attempts_time ON delivery_attempts (attempted_at);
DROP INDEX deliveries_event;
CREATE INDEX deliveries_event ON deliveries (account_id, event_id);
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'pending';
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
