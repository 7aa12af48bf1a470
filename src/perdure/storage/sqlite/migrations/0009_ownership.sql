-- Ownership. Every claim of a workflow (a start, a recovery, a takeover, a dequeue, a resume)
-- gives it a new owner token, and every write an execution makes changes nothing unless the
-- workflow still carries the token that execution holds. A step remembers the token of the
-- execution that wrote it: a write retried after its acknowledgement was lost recognises its
-- own commit by that token, never by comparing payloads.
ALTER TABLE workflow_status ADD COLUMN owner_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operation_outputs ADD COLUMN owner_token INTEGER;
-- A receiver blocked in recv registers the token it holds: a sender hands a message only to
-- the execution that owns the workflow now.
ALTER TABLE recv_waiters ADD COLUMN owner_token INTEGER NOT NULL DEFAULT 0;
-- The position a message was handed to (NULL: it was queued).
ALTER TABLE notifications ADD COLUMN handed_to INTEGER;
-- The byte of the lock file a live process holds: free means it is gone.
ALTER TABLE executors ADD COLUMN lock_key INTEGER;
