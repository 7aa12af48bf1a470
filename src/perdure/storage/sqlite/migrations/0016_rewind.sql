-- Rewinding a workflow (DBOS 3.4's rewind_workflow) undoes what it did from a step on, under
-- the same ID. These record at which position each effect that outlives a step happened.
-- The position of the recv step that took a queued message (one handed off: handed_to).
ALTER TABLE notifications ADD COLUMN consumed_by INTEGER;
-- The position of the write (or of the step writing) that appended an entry; NULL from
-- before this migration.
ALTER TABLE streams ADD COLUMN function_id INTEGER;
-- Every value a workflow published under a key, by position (the last one a position set):
-- a rewind gives each key published past its cut back the last value published before it.
CREATE TABLE workflow_events_history (
    workflow_id TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    serialization TEXT NOT NULL,
    PRIMARY KEY (workflow_id, function_id, key)
);
