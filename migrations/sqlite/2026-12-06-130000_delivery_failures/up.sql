-- `attempts` counts every request sent (as the attempt log lists them);
-- `failures` counts the failed tries that step the retry schedule
-- (Retry-After, 410 and requests of a superseded configuration do not).
ALTER TABLE deliveries ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
UPDATE deliveries SET failures = attempts WHERE status <> 'delivered';
