-- Run-time schedules (DBOS.create_schedule): the scheduler of every process re-reads them, so a
-- schedule created, paused or deleted anywhere takes effect everywhere.
CREATE TABLE schedules (
    schedule_name TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    workflow_class_name TEXT,
    schedule TEXT NOT NULL,
    context BLOB NOT NULL,
    serialization TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
