-- DBOS 3.4's partition limits: a queue with any of them is partitioned, and they hold over
-- each partition while concurrency, worker_concurrency and the rate limit hold over the whole
-- queue. Queues stored before this migration have none (partition_queue alone keeps DBOS
-- 2.31's meaning: every limit per partition).
ALTER TABLE queues ADD COLUMN partition_concurrency INTEGER;
ALTER TABLE queues ADD COLUMN partition_worker_concurrency INTEGER;
ALTER TABLE queues ADD COLUMN partition_rate_limit INTEGER;
ALTER TABLE queues ADD COLUMN partition_rate_period_sec REAL;
