"""Operators' calls: list, cancel, resume, requeue, fork, delete, garbage collection.

Listings are assembled from the fragments below; only placeholders and column names are ever
joined in, never values.
"""

from __future__ import annotations

from typing import Any

from perdure.storage.database import Chain, Database, Part, Tx
from perdure.storage.records import (
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    QueueCounts,
    WorkflowQuery,
    WorkflowRow,
)
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.sql.rows import WF_COLS, WF_MARKS, marks, workflow_params, workflow_row

# Statuses a workflow can still move on from; garbage collection never deletes these.
UNFINISHED = "('PENDING', 'ENQUEUED')"
# Statuses a resume or a requeue takes a workflow from.
RESUMABLE = "('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'ENQUEUED', 'PENDING')"

# -- listing ------------------------------------------------------------------------------------

# Payload columns a listing may skip; the others are always read.
INPUT_COLUMNS = frozenset({"inputs"})
OUTPUT_COLUMNS = frozenset({"output", "error"})
LIST_WORKFLOWS = "SELECT {columns} FROM {p}workflow_status"
ORDER_OLDEST_FIRST = " ORDER BY created_at, workflow_id"
ORDER_NEWEST_FIRST = " ORDER BY created_at DESC, workflow_id DESC"
LIMIT_OFFSET = " LIMIT ? OFFSET ?"
# SQLite needs a LIMIT before an OFFSET; a bound this large means "no limit" on both backends.
NO_LIMIT = 2**62
# A workflow-ID prefix, matched as a range in binary order, which an index serves on both
# backends (SQLite's primary key; on PostgreSQL an index on ``workflow_id COLLATE "C"``).
PREFIX_RANGE = "workflow_id{collate} >= ? AND workflow_id{collate} < ?"
PREFIX_START = "substr(workflow_id, 1, ?) = ?"

QUEUED = f"queue_name IS NOT NULL AND status IN {UNFINISHED}"
QUEUE_COUNTS = (
    "SELECT queue_name, "
    "SUM(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) "
    f"FROM {{p}}workflow_status WHERE {QUEUED} GROUP BY queue_name ORDER BY queue_name"
)

# -- cancel, resume, requeue, fork --------------------------------------------------------------

# A workflow and all its descendants. Followed by the statement that uses ``tree``.
_TREE = (
    "WITH RECURSIVE tree (workflow_id) AS ("
    "SELECT workflow_id FROM {p}workflow_status WHERE workflow_id IN ({seeds}) "
    "UNION SELECT w.workflow_id FROM {p}workflow_status w "
    "JOIN tree t ON w.parent_workflow_id = t.workflow_id) "
)
SELECT_TREE = _TREE + "SELECT workflow_id FROM tree"
CANCEL_TREE = (
    _TREE.replace("{seeds}", "?") + "UPDATE {p}workflow_status SET status = 'CANCELLED', "
    "updated_at = {now} WHERE workflow_id IN (SELECT workflow_id FROM tree) "
    f"AND status IN {UNFINISHED} RETURNING workflow_id"
)
EXISTS = "SELECT 1 FROM {p}workflow_status WHERE workflow_id = ?"

# A resumed workflow leaves its queue and its deadline (its timeout was for the first run).
# ``OR owner_token = ?`` (the new token): a retry after a lost acknowledgement finds it done.
RESUME = (
    "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = ?, instance_id = ?, "
    "owner_token = ?, recovery_attempts = 1, queue_name = NULL, "
    "workflow_deadline_epoch_ms = NULL, updated_at = {now} WHERE workflow_id = ? "
    f"AND (status IN {RESUMABLE} OR owner_token = ?) RETURNING {WF_COLS}"
)
# A workflow handed to whichever process claims it from a queue: a plain entry there, with
# its timeout cleared like any resumed workflow's. The new token fences off its execution.
REQUEUE = (
    "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = ?, owner_token = ?, "
    "recovery_attempts = 0, workflow_timeout_ms = NULL, workflow_deadline_epoch_ms = NULL, "
    "dequeued_at_epoch_ms = NULL, not_before_epoch_ms = NULL, deduplication_id = NULL, "
    "queue_partition_key = NULL, priority = 0, updated_at = {now} WHERE workflow_id = ? "
    f"AND (status IN {RESUMABLE} OR owner_token = ?)"
)

_COPIED_STEP_COLS = ", ".join(c for c in STEP_COLUMNS if c not in ("workflow_id", "owner_token"))
# The new row and its copied steps together; ``prior``: this same fork (its token) inserted
# the row already, in an attempt whose acknowledgement was lost.
FORK = Chain(
    "fork",
    (
        Part(
            "prior",
            "SELECT 1 AS one FROM {p}workflow_status WHERE workflow_id = ? AND owner_token = ?",
        ),
        Part(
            "inserted",
            f"INSERT INTO {{p}}workflow_status ({WF_COLS}) SELECT {WF_MARKS} WHERE 1 = 1 "
            "ON CONFLICT (workflow_id) DO NOTHING RETURNING 1 AS one",
        ),
        Part(
            "copied",
            f"INSERT INTO {{p}}operation_outputs ({', '.join(STEP_COLUMNS)}) "
            f"SELECT ?, {_COPIED_STEP_COLS}, NULL FROM {{p}}operation_outputs "
            "WHERE workflow_id = ? AND function_id < ? AND EXISTS (SELECT 1 FROM {@inserted}) "
            "RETURNING 1 AS one",
        ),
    ),
    "SELECT (SELECT COUNT(*) FROM {@inserted}) + (SELECT COUNT(*) FROM {@prior})",
)

# -- delete and garbage collection ----------------------------------------------------------------

# What a deleted workflow takes with it: checkpoints, its events, streams, its inbox, and
# registrations of waiters for its result and of its own blocked recv.
WORKFLOW_OWNED_ROWS = (
    ("operation_outputs", "workflow_id"),
    ("workflow_events", "workflow_id"),
    ("streams", "workflow_id"),
    ("notifications", "destination_id"),
    ("result_waiters", "workflow_id"),
    ("recv_waiters", "workflow_id"),
)
DELETE_OWNED_ROWS = "DELETE FROM {p}{table} WHERE {column} IN ({ids})"
_DELETE_WORKFLOWS = "DELETE FROM {p}workflow_status WHERE workflow_id IN ({ids})"
DELETE_WORKFLOWS = _DELETE_WORKFLOWS + " RETURNING workflow_id"
# Re-checks the status at delete time: a workflow resumed meanwhile is kept.
DELETE_FINISHED_WORKFLOWS = (
    _DELETE_WORKFLOWS + f" AND status NOT IN {UNFINISHED} RETURNING workflow_id"
)
FINISHED_BEFORE = (
    "SELECT workflow_id FROM {p}workflow_status WHERE created_at < ? "
    f"AND status NOT IN {UNFINISHED} ORDER BY created_at LIMIT ?"
)


def list_workflows(db: Database, query: WorkflowQuery) -> list[WorkflowRow]:
    """See `Store.list_workflows`."""
    text, params = listing(query, collate=db.dialect.binary_collation)
    return [workflow_row(r) for r in db.run(text, params).rows]


def _status_condition(
    statuses: tuple[str, ...] | None, conditions: list[str], params: list[Any]
) -> None:
    # DELAYED is stored as ENQUEUED with a start time still ahead (by the database's clock);
    # ENQUEUED then means one free to start.
    if statuses is None:
        return
    stored = [s for s in statuses if s not in (S.ENQUEUED, S.DELAYED)]
    parts = [f"status IN ({marks(len(stored))})"] if stored else []
    params.extend(stored)
    if S.ENQUEUED in statuses:
        parts.append(
            "(status = 'ENQUEUED' AND (not_before_epoch_ms IS NULL "
            "OR not_before_epoch_ms <= {now}))"
        )
    if S.DELAYED in statuses:
        parts.append("(status = 'ENQUEUED' AND not_before_epoch_ms > {now})")
    conditions.append("(" + " OR ".join(parts) + ")" if parts else "1 = 0")


def listing(query: WorkflowQuery, *, collate: str) -> tuple[str, list[Any]]:
    """The SELECT of a listing and its parameters (``collate``: the dialect's binary order)."""
    skipped = (INPUT_COLUMNS if not query.with_inputs else frozenset()) | (
        OUTPUT_COLUMNS if not query.with_outputs else frozenset()
    )
    columns = ", ".join("NULL" if c in skipped else c for c in WORKFLOW_COLUMNS)
    conditions: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: tuple[Any, ...] | None) -> None:
        if values is not None:
            conditions.append(f"{column} IN ({marks(len(values))})" if values else "1 = 0")
            params.extend(values)

    any_of("workflow_id", query.workflow_ids)
    _status_condition(query.statuses, conditions, params)
    any_of("name", query.names)
    any_of("app_version", query.app_versions)
    any_of("authenticated_user", query.users)
    any_of("queue_name", query.queue_names)
    any_of("instance_id", query.owners)
    if query.queued_only:
        conditions.append(QUEUED)
    if query.workflow_id_prefix:
        _prefix_condition(query.workflow_id_prefix, conditions, params, collate)
    if query.created_from_ms is not None:
        conditions.append("created_at >= ?")
        params.append(query.created_from_ms)
    if query.created_to_ms is not None:
        conditions.append("created_at <= ?")
        params.append(query.created_to_ms)
    text = LIST_WORKFLOWS.replace("{columns}", columns)
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    text += ORDER_NEWEST_FIRST if query.newest_first else ORDER_OLDEST_FIRST
    if query.limit is not None or query.offset:
        text += LIMIT_OFFSET
        params.extend((NO_LIMIT if query.limit is None else query.limit, query.offset or 0))
    return text, params


def _prefix_condition(prefix: str, conditions: list[str], params: list[Any], collate: str) -> None:
    # Binary order: the IDs with this prefix are exactly those in [prefix, successor).
    last = ord(prefix[-1])
    if last == 0x10FFFF:  # no successor character: match by the start instead
        conditions.append(PREFIX_START)
        params.extend((len(prefix), prefix))
        return
    conditions.append(PREFIX_RANGE.replace("{collate}", collate))
    params.extend((prefix, prefix[:-1] + chr(last + 1)))


def queue_counts(db: Database) -> list[QueueCounts]:
    """See `Store.queue_counts`."""
    return [QueueCounts(r[0], int(r[1]), int(r[2])) for r in db.run(QUEUE_COUNTS).rows]


def cancel_workflows(db: Database, workflow_id: str) -> list[str] | None:
    """See `Store.cancel_workflows`."""
    rows = db.run(CANCEL_TREE, (workflow_id,)).rows
    if rows:
        return [r[0] for r in rows]
    # Nothing was unfinished: tell "finished" from "unknown" (only on this path).
    return [] if db.run(EXISTS, (workflow_id,)).rows else None


def resume_workflow(
    db: Database, workflow_id: str, *, executor_id: str, instance_id: str, token: int
) -> WorkflowRow | None:
    """See `Store.resume_workflow`."""
    params = (executor_id, instance_id, token, workflow_id, token)
    rows = db.run(RESUME, params).rows
    return workflow_row(rows[0]) if rows else None


def requeue_workflow(db: Database, workflow_id: str, *, queue_name: str, token: int) -> bool:
    """See `Store.requeue_workflow`."""
    return db.run(REQUEUE, (queue_name, token, workflow_id, token)).changed == 1


def fork_workflow(db: Database, row: WorkflowRow, *, source_id: str, start_step: int) -> bool:
    """See `Store.fork_workflow`."""
    params = {
        "prior": (row.workflow_id, row.owner_token),
        "inserted": workflow_params(row),
        "copied": (row.workflow_id, source_id, start_step),
    }
    return bool(db.chain(FORK, params).rows[0][0])


def delete_workflows(
    db: Database, workflow_ids: tuple[str, ...], *, with_children: bool
) -> list[str]:
    """See `Store.delete_workflows`."""
    if not workflow_ids:
        return []

    def delete(tx: Tx) -> list[str]:
        ids = list(workflow_ids)
        if with_children:
            tree = SELECT_TREE.replace("{seeds}", marks(len(ids)))
            ids = [r[0] for r in tx.run(tree, ids).rows]
        return _delete_rows(tx, ids, DELETE_WORKFLOWS) if ids else []

    return db.transaction(delete)


def _delete_rows(tx: Tx, ids: list[str], statement: str) -> list[str]:
    """Delete the workflows' owned rows, then those ``statement`` deletes of ``ids``."""
    deleted = [r[0] for r in tx.run(statement.replace("{ids}", marks(len(ids))), ids).rows]
    if deleted:
        for table, column in WORKFLOW_OWNED_ROWS:
            owned = (
                DELETE_OWNED_ROWS.replace("{table}", table)
                .replace("{column}", column)
                .replace("{ids}", marks(len(deleted)))
            )
            tx.run(owned, deleted)
    return deleted


def delete_finished_batch(db: Database, *, created_before_ms: int, limit: int) -> int:
    """See `Store.delete_finished_batch`."""

    def delete(tx: Tx) -> int:
        ids = [r[0] for r in tx.run(FINISHED_BEFORE, (created_before_ms, limit)).rows]
        return len(_delete_rows(tx, ids, DELETE_FINISHED_WORKFLOWS)) if ids else 0

    return db.transaction(delete)
