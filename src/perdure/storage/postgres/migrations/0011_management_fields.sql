-- What listings report and filter on besides creation: when a workflow ended (SUCCESS, ERROR,
-- CANCELLED, dead-lettered; cleared when it is resumed), whether a fork was made of it, and
-- the schedule whose tick started it. Rows from before this migration have none of them.
ALTER TABLE perdure.workflow_status ADD COLUMN completed_at BIGINT;
ALTER TABLE perdure.workflow_status ADD COLUMN was_forked_from BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE perdure.workflow_status ADD COLUMN schedule_name TEXT;

-- A new start time of a waiting workflow (set_workflow_delay) wakes dequeuers in every
-- process, as an enqueue does: one sleeping until the old time would start it late.
CREATE TRIGGER workflow_status_notify_delay AFTER UPDATE OF not_before_epoch_ms ON perdure.workflow_status
    FOR EACH ROW WHEN (NEW.status = 'ENQUEUED' AND NEW.queue_name IS NOT NULL
                       AND OLD.not_before_epoch_ms IS DISTINCT FROM NEW.not_before_epoch_ms)
    EXECUTE FUNCTION perdure.notify_queue();
