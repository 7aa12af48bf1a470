-- DBOS 3.4's partition limits: a queue with any of them is partitioned, and they hold over
-- each partition while concurrency, worker_concurrency and the rate limit hold over the whole
-- queue. Queues stored before this migration have none (partition_queue alone keeps DBOS
-- 2.31's meaning: every limit per partition).
ALTER TABLE perdure.queues ADD COLUMN partition_concurrency INTEGER;
ALTER TABLE perdure.queues ADD COLUMN partition_worker_concurrency INTEGER;
ALTER TABLE perdure.queues ADD COLUMN partition_rate_limit INTEGER;
ALTER TABLE perdure.queues ADD COLUMN partition_rate_period_sec DOUBLE PRECISION;

-- A queue stored, changed or deleted wakes the dequeuers of every process, which read the
-- definitions again: a raised limit applies at once, and a new queue is served at once.
-- Payload "queue||" (no queue has an empty name).
CREATE FUNCTION perdure.notify_queue_definitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM perdure.hint('queue||');
    RETURN NULL;
END $$;
CREATE TRIGGER queues_notify_definitions AFTER INSERT OR UPDATE OR DELETE ON perdure.queues
    FOR EACH STATEMENT EXECUTE FUNCTION perdure.notify_queue_definitions();
