-- Ownership. Every claim of a workflow (a start, a recovery, a takeover, a dequeue, a resume)
-- gives it a new owner token, and every write an execution makes changes nothing unless the
-- workflow still carries the token that execution holds. A step remembers the token of the
-- execution that wrote it: a write retried after its acknowledgement was lost recognises its
-- own commit by that token, never by comparing payloads.
ALTER TABLE perdure.workflow_status ADD COLUMN owner_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE perdure.operation_outputs ADD COLUMN owner_token BIGINT;
-- A receiver blocked in recv registers the token it holds: a sender hands a message only to
-- the execution that owns the workflow now.
ALTER TABLE perdure.recv_waiters ADD COLUMN owner_token BIGINT NOT NULL DEFAULT 0;
-- The position a message was handed to (NULL: it was queued).
ALTER TABLE perdure.notifications ADD COLUMN handed_to INTEGER;
-- The advisory lock a live process holds on its own connection: free means it is gone.
ALTER TABLE perdure.executors ADD COLUMN lock_key BIGINT;

-- Workflow-ID prefix search compares in binary order; this index serves that comparison.
DROP INDEX perdure.workflow_status_id_pattern;
CREATE INDEX workflow_status_id_binary ON perdure.workflow_status (workflow_id COLLATE "C");

-- The wake-up of a hand-off names the receiving step: "recv|<workflow>|<position>|<format>|
-- <base64 message>", the last two empty when the message is too long for a notification.
CREATE FUNCTION perdure.notify_handed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(NEW.message) <= 3072 AND octet_length(NEW.destination_id) <= 2048 THEN
        PERFORM pg_notify('perdure', 'recv|' || NEW.destination_id || '|' || NEW.handed_to
            || '|' || NEW.serialization || '|' || encode(NEW.message, 'base64'));
    ELSE
        PERFORM pg_notify('perdure', 'recv|' || NEW.destination_id || '|' || NEW.handed_to
            || '||');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_notify_handed AFTER INSERT ON perdure.notifications
    FOR EACH ROW WHEN (NEW.handed_to IS NOT NULL) EXECUTE FUNCTION perdure.notify_handed();
