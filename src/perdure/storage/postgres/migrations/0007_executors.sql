-- Launched processes and their heartbeats. Each one upserts its row every heartbeat interval;
-- a row that has not been updated for the dead-executor timeout belongs to a dead process,
-- whose PENDING workflows a live process takes over. Times are the database server's clock,
-- so the clocks of the machines running Perdure do not matter.
CREATE TABLE perdure.executors (
    instance_id TEXT PRIMARY KEY,
    executor_id TEXT NOT NULL,
    app_version TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
-- Takeover looks up the PENDING workflows of one dead instance.
CREATE INDEX workflow_status_pending_owner ON perdure.workflow_status (instance_id)
    WHERE status = 'PENDING';
