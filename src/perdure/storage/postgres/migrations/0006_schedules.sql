-- Run-time schedules (DBOS.create_schedule): the scheduler of every process re-reads them, so a
-- schedule created, paused or deleted anywhere takes effect everywhere.
CREATE TABLE perdure.schedules (
    schedule_name TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    workflow_class_name TEXT,
    schedule TEXT NOT NULL,
    context BYTEA NOT NULL,
    serialization TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
