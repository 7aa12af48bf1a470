-- Launched processes and their heartbeats. Each one upserts its row every heartbeat interval;
-- a row that has not been updated for the dead-executor timeout belongs to a dead process,
-- whose PENDING workflows a live process takes over. Times are taken from SQLite's clock.
CREATE TABLE executors (
    instance_id TEXT PRIMARY KEY,
    executor_id TEXT NOT NULL,
    app_version TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
-- Takeover looks up the PENDING workflows of one dead instance.
CREATE INDEX workflow_status_pending_owner ON workflow_status (instance_id)
    WHERE status = 'PENDING';
