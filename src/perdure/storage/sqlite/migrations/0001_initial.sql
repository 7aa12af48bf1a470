-- Workflows and their checkpointed operations. Times are epoch milliseconds (UTC).
CREATE TABLE workflow_status (
    workflow_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    class_name TEXT,
    config_name TEXT,
    inputs BLOB,
    output BLOB,
    error BLOB,
    serialization TEXT NOT NULL,
    executor_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    app_version TEXT NOT NULL DEFAULT '',
    queue_name TEXT,
    authenticated_user TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 1,
    workflow_timeout_ms INTEGER,
    workflow_deadline_epoch_ms INTEGER,
    parent_workflow_id TEXT,
    forked_from TEXT,
    deduplication_id TEXT,
    priority INTEGER NOT NULL DEFAULT 0
);

-- Recovery scans only unfinished work of one executor.
CREATE INDEX workflow_status_pending ON workflow_status (executor_id) WHERE status = 'PENDING';
CREATE INDEX workflow_status_created_at ON workflow_status (created_at);

CREATE TABLE operation_outputs (
    workflow_id TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    output BLOB,
    error BLOB,
    child_workflow_id TEXT,
    serialization TEXT NOT NULL,
    started_at_epoch_ms INTEGER NOT NULL,
    completed_at_epoch_ms INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, function_id)
);
