-- Workflows and their checkpointed operations. Times are epoch milliseconds (UTC).
CREATE TABLE perdure.workflow_status (
    workflow_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    class_name TEXT,
    config_name TEXT,
    inputs BYTEA,
    output BYTEA,
    error BYTEA,
    serialization TEXT NOT NULL,
    executor_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    app_version TEXT NOT NULL DEFAULT '',
    queue_name TEXT,
    authenticated_user TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 1,
    workflow_timeout_ms BIGINT,
    workflow_deadline_epoch_ms BIGINT,
    parent_workflow_id TEXT,
    forked_from TEXT,
    deduplication_id TEXT,
    priority INTEGER NOT NULL DEFAULT 0
);

-- Recovery scans only unfinished work of one executor.
CREATE INDEX workflow_status_pending ON perdure.workflow_status (executor_id) WHERE status = 'PENDING';
CREATE INDEX workflow_status_created_at ON perdure.workflow_status (created_at);

CREATE TABLE perdure.operation_outputs (
    workflow_id TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    output BYTEA,
    error BYTEA,
    child_workflow_id TEXT,
    serialization TEXT NOT NULL,
    started_at_epoch_ms BIGINT NOT NULL,
    completed_at_epoch_ms BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, function_id)
);
