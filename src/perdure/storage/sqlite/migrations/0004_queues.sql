-- Queues: where a queued workflow waits, when it may start, and when it was dequeued.
ALTER TABLE workflow_status ADD COLUMN queue_partition_key TEXT;
ALTER TABLE workflow_status ADD COLUMN not_before_epoch_ms INTEGER;
ALTER TABLE workflow_status ADD COLUMN dequeued_at_epoch_ms INTEGER;

-- Queue definitions, declared in code or registered at run time; clients and the CLI read them.
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    rate_limit INTEGER,
    rate_period_sec REAL,
    priority_enabled INTEGER NOT NULL DEFAULT 0,
    partition_queue INTEGER NOT NULL DEFAULT 0,
    polling_interval_sec REAL NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The dequeue order: ready workflows of a queue by priority, then FIFO.
CREATE INDEX workflow_status_dequeue ON workflow_status (queue_name, priority, created_at) WHERE status = 'ENQUEUED';
-- Running workflows of a queue (global and per-executor concurrency).
CREATE INDEX workflow_status_queue_running ON workflow_status (queue_name, executor_id) WHERE status = 'PENDING' AND queue_name IS NOT NULL;
-- Dequeue times of a queue within the rate limiter's window.
CREATE INDEX workflow_status_dequeued_at ON workflow_status (queue_name, dequeued_at_epoch_ms) WHERE dequeued_at_epoch_ms IS NOT NULL;
-- At most one unfinished workflow per deduplication ID and queue: makes the check atomic.
CREATE UNIQUE INDEX workflow_status_deduplication ON workflow_status (queue_name, deduplication_id) WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');
