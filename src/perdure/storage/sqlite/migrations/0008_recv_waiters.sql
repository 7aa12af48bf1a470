-- Workflows blocked in recv, by topic, with the position of the recv step. A sender that finds
-- the receiver here (and no older message queued) records the message as that step in its own
-- transaction, so the receiver returns without a transaction of its own.
CREATE TABLE recv_waiters (
    workflow_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, topic)
);
