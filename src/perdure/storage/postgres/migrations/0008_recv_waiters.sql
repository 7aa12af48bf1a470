-- Workflows blocked in recv, by topic, with the position of the recv step. A sender that finds
-- the receiver here (and no older message queued) records the message as that step in its own
-- statement, so the receiver returns without a round trip of its own. The primary key of
-- operation_outputs decides a race with the receiver's timeout or with another sender.
-- UNLOGGED: these are hints, not data; after a server crash they are gone and senders queue
-- messages as before, which every receiver also watches for.
CREATE UNLOGGED TABLE perdure.recv_waiters (
    workflow_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, topic)
);

-- A handed-off message is stored consumed (its ID still deduplicates); its wake-up names the
-- receiving step, sent by the statement that hands it off. Queued messages notify as before.
DROP TRIGGER notifications_notify ON perdure.notifications;
CREATE TRIGGER notifications_notify AFTER INSERT ON perdure.notifications
    FOR EACH ROW WHEN (NEW.consumed = 0) EXECUTE FUNCTION perdure.notify_message();
