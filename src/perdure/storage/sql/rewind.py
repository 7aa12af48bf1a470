"""Rewinding a workflow: undo what it did from a position on and enqueue it again, same ID.

One transaction. The workflow's row is read and locked, and moved from its terminal status to
ENQUEUED as a compare-and-set on that status and its owner token (the new token fences off
anything still holding the old one); only then are its records from the cut on undone:

- its steps (checkpoints, child links, recorded sends and receives) at or past the cut;
- its events: each key published at or past the cut gets back the last value published
  before it, or is deleted if there is none (the history goes back to the cut too);
- the close of each stream written at or past the cut (the entries stay: offsets are what
  readers hold; the rerun appends after them);
- its mailbox: messages taken by a receive at or past the cut, and those nobody took, are
  deleted (as DBOS does); those taken before the cut stay, consumed;
- a stale registration of a receive still waiting.

Children started past the cut are left alone: the rerun finds each under the ID it gets again
and adopts it (its recorded outcome). Rows written before migration 0016 carry no position
and are left as they are.
"""

from __future__ import annotations

from perdure.storage.database import Database, Tx
from perdure.storage.records import Rewind

# Statuses a rewind takes a workflow from: finished ones, whose executions have all stopped.
REWINDABLE = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")

STATE = "SELECT status, owner_token FROM {p}workflow_status WHERE workflow_id = ? {lock}"
# Enqueued as a plain entry on the given queue (and partition), its outcome, deadline and
# recovery attempts cleared; its timeout runs again from the dequeue.
REQUEUE = (
    "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = ?, queue_partition_key = ?, "
    "app_version = COALESCE(CAST(? AS {text}), app_version), owner_token = ?, output = NULL, "
    "error = NULL, recovery_attempts = 0, workflow_deadline_epoch_ms = NULL, "
    "dequeued_at_epoch_ms = NULL, not_before_epoch_ms = NULL, deduplication_id = NULL, "
    "priority = 0, completed_at = NULL, updated_at = {now} "
    "WHERE workflow_id = ? AND status = ? AND owner_token = ?"
)
# The keys the workflow published at or past the cut.
_KEYS_PAST_CUT = (
    "SELECT key FROM {p}workflow_events_history WHERE workflow_id = ? AND function_id >= ?"
)
DROP_EVENTS = (
    f"DELETE FROM {{p}}workflow_events WHERE workflow_id = ? AND key IN ({_KEYS_PAST_CUT})"
)
RESTORE_EVENTS = (
    "INSERT INTO {p}workflow_events (workflow_id, key, value, serialization, "
    "updated_at_epoch_ms) SELECT h.workflow_id, h.key, h.value, h.serialization, {now} "
    "FROM {p}workflow_events_history h WHERE h.workflow_id = ? "
    f"AND h.key IN ({_KEYS_PAST_CUT}) "
    "AND h.function_id = (SELECT MAX(b.function_id) FROM {p}workflow_events_history b "
    "WHERE b.workflow_id = h.workflow_id AND b.key = h.key AND b.function_id < ?)"
)
DROP_EVENT_HISTORY = (
    "DELETE FROM {p}workflow_events_history WHERE workflow_id = ? AND function_id >= ?"
)
DROP_STREAM_CLOSES = (
    "DELETE FROM {p}streams WHERE workflow_id = ? AND closed = 1 AND function_id >= ?"
)
DROP_STEPS = "DELETE FROM {p}operation_outputs WHERE workflow_id = ? AND function_id >= ?"
DROP_MESSAGES = (
    "DELETE FROM {p}notifications WHERE destination_id = ? "
    "AND (consumed = 0 OR handed_to >= ? OR consumed_by >= ?)"
)
DROP_RECV_WAITERS = "DELETE FROM {p}recv_waiters WHERE workflow_id = ?"


def rewind_workflow(
    db: Database,
    workflow_id: str,
    *,
    start_step: int,
    queue_name: str,
    partition_key: str | None,
    app_version: str | None,
    token: int,
) -> Rewind:
    """See `Store.rewind_workflow`."""

    def rewind(tx: Tx) -> Rewind:
        rows = tx.run(STATE, (workflow_id,)).rows
        if not rows:
            return Rewind(status=None, rewound=False)
        status, owner_token = rows[0]
        if owner_token == token:  # this rewind, committed by an attempt whose reply was lost
            return Rewind(status=status, rewound=True)
        if status not in REWINDABLE:
            return Rewind(status=status, rewound=False)
        requeue = (queue_name, partition_key, app_version, token, workflow_id, status, owner_token)
        if tx.run(REQUEUE, requeue).changed != 1:
            return Rewind(status=status, rewound=False)
        tx.run(DROP_EVENTS, (workflow_id, workflow_id, start_step))
        tx.run(RESTORE_EVENTS, (workflow_id, workflow_id, start_step, start_step))
        tx.run(DROP_EVENT_HISTORY, (workflow_id, start_step))
        tx.run(DROP_STREAM_CLOSES, (workflow_id, start_step))
        tx.run(DROP_STEPS, (workflow_id, start_step))
        tx.run(DROP_MESSAGES, (workflow_id, start_step, start_step))
        tx.run(DROP_RECV_WAITERS, (workflow_id,))
        return Rewind(status=status, rewound=True)

    return db.transaction(rewind)
