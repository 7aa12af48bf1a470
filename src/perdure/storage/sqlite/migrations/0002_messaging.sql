-- Messages sent to workflows (FIFO per destination and topic). A received message is marked
-- consumed, not deleted, so its ID keeps a retried idempotent send from delivering it again.
CREATE TABLE notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    destination_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    message BLOB,
    serialization TEXT NOT NULL,
    created_at_epoch_ms INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notifications_queue ON notifications (destination_id, topic, seq) WHERE consumed = 0;

-- The latest value of each key a workflow published with set_event.
CREATE TABLE workflow_events (
    workflow_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    serialization TEXT NOT NULL,
    updated_at_epoch_ms INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, key)
);

-- Values written to a workflow's streams, in order; a row with closed = 1 ends the stream.
CREATE TABLE streams (
    workflow_id TEXT NOT NULL,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value BLOB,
    serialization TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, key, "offset")
);

-- Lets any process look up the children of a workflow (cancel cascades, management).
CREATE INDEX workflow_status_parent ON workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
