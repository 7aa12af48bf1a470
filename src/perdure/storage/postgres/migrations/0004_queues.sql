-- Queues: where a queued workflow waits, when it may start, and when it was dequeued.
ALTER TABLE perdure.workflow_status ADD COLUMN queue_partition_key TEXT;
ALTER TABLE perdure.workflow_status ADD COLUMN not_before_epoch_ms BIGINT;
ALTER TABLE perdure.workflow_status ADD COLUMN dequeued_at_epoch_ms BIGINT;

-- Queue definitions, declared in code or registered at run time; clients and the CLI read
-- them, and a claim with global limits locks its queue's row so claims never overlap.
CREATE TABLE perdure.queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    rate_limit INTEGER,
    rate_period_sec DOUBLE PRECISION,
    priority_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    partition_queue BOOLEAN NOT NULL DEFAULT FALSE,
    polling_interval_sec DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The dequeue order: ready workflows of a queue by priority, then FIFO.
CREATE INDEX workflow_status_dequeue ON perdure.workflow_status (queue_name, priority, created_at) WHERE status = 'ENQUEUED';
-- Running workflows of a queue (global and per-executor concurrency).
CREATE INDEX workflow_status_queue_running ON perdure.workflow_status (queue_name, executor_id) WHERE status = 'PENDING' AND queue_name IS NOT NULL;
-- Dequeue times of a queue within the rate limiter's window.
CREATE INDEX workflow_status_dequeued_at ON perdure.workflow_status (queue_name, dequeued_at_epoch_ms) WHERE dequeued_at_epoch_ms IS NOT NULL;
-- At most one unfinished workflow per deduplication ID and queue: makes the check atomic.
CREATE UNIQUE INDEX workflow_status_deduplication ON perdure.workflow_status (queue_name, deduplication_id) WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- Wake dequeuers in every process: when a workflow is enqueued, and when a queued workflow
-- stops running (a concurrency slot frees up). Payload "queue|<name>|".
CREATE FUNCTION perdure.notify_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perdure', 'queue|' || NEW.queue_name || '|');
    RETURN NULL;
END $$;
CREATE TRIGGER workflow_status_notify_enqueued AFTER INSERT ON perdure.workflow_status
    FOR EACH ROW WHEN (NEW.status = 'ENQUEUED' AND NEW.queue_name IS NOT NULL)
    EXECUTE FUNCTION perdure.notify_queue();
CREATE TRIGGER workflow_status_notify_queue_slot AFTER UPDATE OF status ON perdure.workflow_status
    FOR EACH ROW WHEN (NEW.queue_name IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
                       AND (OLD.status = 'PENDING' OR NEW.status = 'ENQUEUED'))
    EXECUTE FUNCTION perdure.notify_queue();
