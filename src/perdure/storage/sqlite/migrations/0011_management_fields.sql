-- What listings report and filter on besides creation: when a workflow ended (SUCCESS, ERROR,
-- CANCELLED, dead-lettered; cleared when it is resumed), whether a fork was made of it, and
-- the schedule whose tick started it. Rows from before this migration have none of them.
ALTER TABLE workflow_status ADD COLUMN completed_at INTEGER;
ALTER TABLE workflow_status ADD COLUMN was_forked_from INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_status ADD COLUMN schedule_name TEXT;
