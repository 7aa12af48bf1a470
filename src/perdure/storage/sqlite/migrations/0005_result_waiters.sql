-- Who waits for a workflow's end from another process (the same table as on PostgreSQL, where
-- it decides which completions notify; SQLite waiters poll).
CREATE TABLE result_waiters (
    workflow_id TEXT NOT NULL,
    waiter_id TEXT NOT NULL,
    PRIMARY KEY (workflow_id, waiter_id)
);
