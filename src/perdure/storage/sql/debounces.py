"""Debouncing: the workflow waiting under a debounce key takes each call's inputs in place.

A debounced workflow is a delayed queued workflow whose deduplication ID is the debounce key,
so the unique index of unfinished deduplication IDs keeps at most one per key and queue. Its
window is open while it waits (ENQUEUED) with its start time ahead and, under a timeout, while
``created_at + timeout`` is ahead too; a call in an open window replaces its inputs and moves
its start time. The claim that starts it updates the same row, so the two take turns on it (a
row lock on PostgreSQL, the write lock on SQLite): a call lands either before the start or on
a closed window. A closed window gives the key up (its deduplication ID is cleared and the
workflow runs as it is), so that call's caller starts the next window.
"""

from __future__ import annotations

from perdure.storage.database import Database, Tx
from perdure.storage.records import Debounced, DebounceOutcome, DebounceRequest

_BOUNCE = (
    "UPDATE {p}workflow_status SET inputs = ?, serialization = ?, updated_at = {now}, "
    "not_before_epoch_ms = {start} WHERE queue_name = ? AND deduplication_id = ? AND name = ? "
    "AND status = 'ENQUEUED' AND not_before_epoch_ms > ?{open} RETURNING workflow_id"
)
# The workflow under the key takes the call's inputs and start time, if its window is open.
BOUNCE = _BOUNCE.replace("{start}", "?").replace("{open}", "")
# The same under a timeout: the start time is capped at the window's end.
BOUNCE_CAPPED = _BOUNCE.replace(
    "{start}", "CASE WHEN created_at + ? < ? THEN created_at + ? ELSE ? END"
).replace("{open}", " AND created_at + ? > ?")
# The unfinished workflow holding the key, locked while the call decides what to do with it.
HOLDER = (
    "SELECT workflow_id, name, status, not_before_epoch_ms, created_at FROM {p}workflow_status "
    "WHERE queue_name = ? AND deduplication_id = ? AND status IN ('ENQUEUED', 'PENDING') {lock}"
)
# A workflow whose window closed gives its key up; it runs (or goes on running) as it is.
RELEASE = (
    "UPDATE {p}workflow_status SET deduplication_id = NULL, updated_at = {now} "
    "WHERE workflow_id = ? AND deduplication_id = ?"
)


def debounce_workflow(db: Database, request: DebounceRequest) -> DebounceOutcome:
    """See `Store.debounce_workflow`.

    A retried transaction whose first commit was lost does the same again: its statements'
    values are all parameters, fixed before the first attempt.
    """

    def work(tx: Tx) -> DebounceOutcome:
        bounced = tx.run(*_bounce(request)).rows
        if bounced:
            return DebounceOutcome(Debounced.BOUNCED, bounced[0][0])
        rows = tx.run(HOLDER, (request.queue_name, request.deduplication_id)).rows
        if not rows:
            return DebounceOutcome(Debounced.FREE)
        workflow_id, name, status, not_before, created_at = rows[0]
        if name != request.workflow_name or not_before is None:
            # Not a debounce of this workflow: another workflow's key that collides with
            # this one, or a plain enqueue under the same deduplication ID.
            return DebounceOutcome(Debounced.HELD, workflow_id)
        if _is_open(request, status, int(not_before), int(created_at)):
            return DebounceOutcome(Debounced.RETRY, workflow_id)
        tx.run(RELEASE, (workflow_id, request.deduplication_id))
        return DebounceOutcome(Debounced.FREE)

    return db.transaction(work)


def _bounce(request: DebounceRequest) -> tuple[str, tuple[object, ...]]:
    start, now, timeout = request.not_before_epoch_ms, request.now_epoch_ms, request.timeout_ms
    head = (request.inputs, request.serialization)
    where = (request.queue_name, request.deduplication_id, request.workflow_name, now)
    if timeout is None:
        return BOUNCE, (*head, start, *where)
    return BOUNCE_CAPPED, (*head, timeout, start, timeout, start, *where, timeout, now)


def _is_open(request: DebounceRequest, status: str, not_before: int, created_at: int) -> bool:
    now, timeout = request.now_epoch_ms, request.timeout_ms
    waiting = status == "ENQUEUED" and not_before > now
    return waiting and (timeout is None or created_at + timeout > now)
