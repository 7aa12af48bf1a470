-- Messages sent to workflows (FIFO per destination and topic). A received message is marked
-- consumed, not deleted, so its ID keeps a retried idempotent send from delivering it again.
CREATE TABLE perdure.notifications (
    seq BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    destination_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    message BYTEA,
    serialization TEXT NOT NULL,
    created_at_epoch_ms BIGINT NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notifications_queue ON perdure.notifications (destination_id, topic, seq) WHERE consumed = 0;

-- The latest value of each key a workflow published with set_event.
CREATE TABLE perdure.workflow_events (
    workflow_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA,
    serialization TEXT NOT NULL,
    updated_at_epoch_ms BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, key)
);

-- Values written to a workflow's streams, in order; a row with closed = 1 ends the stream.
CREATE TABLE perdure.streams (
    workflow_id TEXT NOT NULL,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value BYTEA,
    serialization TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, key, "offset")
);

-- Lets any process look up the children of a workflow (cancel cascades, management).
CREATE INDEX workflow_status_parent ON perdure.workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;

-- Wake-ups for every process: one channel, payload "<kind>|<id>|<key>". Triggers, so writes
-- from any process (a client, the CLI) wake waiters without an extra round trip.
CREATE FUNCTION perdure.notify_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perdure', 'msg|' || NEW.destination_id || '|' || NEW.topic);
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_notify AFTER INSERT ON perdure.notifications
    FOR EACH ROW EXECUTE FUNCTION perdure.notify_message();

CREATE FUNCTION perdure.notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perdure', 'event|' || NEW.workflow_id || '|' || NEW.key);
    RETURN NULL;
END $$;
CREATE TRIGGER workflow_events_notify AFTER INSERT OR UPDATE ON perdure.workflow_events
    FOR EACH ROW EXECUTE FUNCTION perdure.notify_event();

CREATE FUNCTION perdure.notify_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perdure', 'stream|' || NEW.workflow_id || '|' || NEW.key);
    RETURN NULL;
END $$;
CREATE TRIGGER streams_notify AFTER INSERT ON perdure.streams
    FOR EACH ROW EXECUTE FUNCTION perdure.notify_stream();

CREATE FUNCTION perdure.notify_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perdure', 'end|' || NEW.workflow_id || '|');
    RETURN NULL;
END $$;
CREATE TRIGGER workflow_status_notify_end AFTER UPDATE OF status ON perdure.workflow_status
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status NOT IN ('PENDING', 'ENQUEUED'))
    EXECUTE FUNCTION perdure.notify_end();
