"""Operators' calls: list, cancel, resume, requeue, fork, delete, garbage collection.

Listings are assembled from the fragments below; only placeholders and column names are ever
joined in, never values.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from perdure.clock import offset_ms
from perdure.storage.database import Chain, Database, Part, Tx
from perdure.storage.records import (
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    QueueCounts,
    StepRow,
    WorkflowQuery,
    WorkflowRow,
)
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.sql.rows import (
    WF_COLS,
    WF_MARKS,
    marks,
    step_row,
    workflow_params,
    workflow_row,
)

# Statuses a workflow can still move on from; garbage collection never deletes these.
UNFINISHED = "('PENDING', 'ENQUEUED')"
# Statuses a resume or a requeue takes a workflow from.
RESUMABLE = "('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'ENQUEUED', 'PENDING')"
# Statuses a cancel takes a workflow from: any but an outcome (or CANCELLED already).
CANCELLABLE = "('PENDING', 'ENQUEUED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"

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
PREFIX_RANGE = "(workflow_id{collate} >= ? AND workflow_id{collate} < ?)"
PREFIX_START = "substr(workflow_id, 1, ?) = ?"
# Time bounds of a listing: (column, the query's lower bound field, its upper bound field).
TIME_BOUNDS = (
    ("created_at", "created_from_ms", "created_to_ms"),
    ("completed_at", "completed_from_ms", "completed_to_ms"),
    ("dequeued_at_epoch_ms", "dequeued_from_ms", "dequeued_to_ms"),
)
# Yes/no filters of a listing: (the query's field, condition if True, condition if False).
FLAGS = (
    ("was_forked_from", "was_forked_from = TRUE", "was_forked_from = FALSE"),
    ("is_fork", "forked_from IS NOT NULL", "forked_from IS NULL"),
    ("has_parent", "parent_workflow_id IS NOT NULL", "parent_workflow_id IS NULL"),
)

ON_QUEUE = "queue_name IS NOT NULL"
QUEUED = f"{ON_QUEUE} AND status IN {UNFINISHED}"
QUEUE_COUNTS = (
    "SELECT queue_name, "
    "SUM(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) "
    f"FROM {{p}}workflow_status WHERE {QUEUED} GROUP BY queue_name ORDER BY queue_name"
)

# Steps of a workflow in order; a listing may skip their payloads, and page.
LIST_STEPS = "SELECT {columns} FROM {p}operation_outputs WHERE workflow_id = ? ORDER BY function_id"
STEP_PAYLOAD_COLUMNS = frozenset({"output", "error"})

# -- cancel, resume, requeue, delay, fork ---------------------------------------------------------

# A workflow and all its descendants. Followed by the statement that uses ``tree``.
_TREE = (
    "WITH RECURSIVE tree (workflow_id) AS ("
    "SELECT workflow_id FROM {p}workflow_status WHERE workflow_id IN ({seeds}) "
    "UNION SELECT w.workflow_id FROM {p}workflow_status w "
    "JOIN tree t ON w.parent_workflow_id = t.workflow_id) "
)
SELECT_TREE = _TREE + "SELECT workflow_id FROM tree"
_CANCEL = (
    "UPDATE {p}workflow_status SET status = 'CANCELLED', updated_at = {now}, "
    "completed_at = {now} WHERE workflow_id IN ({targets}) "
    f"AND status IN {CANCELLABLE} RETURNING workflow_id"
)
CANCEL = _CANCEL.replace("{targets}", "{seeds}")
CANCEL_TREE = _TREE + _CANCEL.replace("{targets}", "SELECT workflow_id FROM tree")

# A resumed workflow leaves its queue and its deadline (its timeout was for the first run).
# ``OR owner_token = ?`` (the new token): a retry after a lost acknowledgement finds it done.
RESUME = (
    "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = ?, instance_id = ?, "
    "owner_token = ?, recovery_attempts = 1, queue_name = NULL, completed_at = NULL, "
    "workflow_deadline_epoch_ms = NULL, updated_at = {now} WHERE workflow_id = ? "
    f"AND (status IN {RESUMABLE} OR owner_token = ?) RETURNING {WF_COLS}"
)
# A workflow handed to whichever process claims it from a queue: a plain entry there, with
# its timeout cleared like any resumed workflow's. The new token fences off its execution.
REQUEUE = (
    "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = ?, owner_token = ?, "
    "recovery_attempts = 0, workflow_timeout_ms = NULL, workflow_deadline_epoch_ms = NULL, "
    "dequeued_at_epoch_ms = NULL, not_before_epoch_ms = NULL, deduplication_id = NULL, "
    "queue_partition_key = NULL, priority = 0, completed_at = NULL, updated_at = {now} "
    f"WHERE workflow_id = ? AND (status IN {RESUMABLE} OR owner_token = ?)"
)
# A new start time for a workflow still waiting on its queue; its queue's name.
DELAY = (
    "UPDATE {p}workflow_status SET not_before_epoch_ms = ?, updated_at = {now} "
    "WHERE workflow_id = ? AND status = 'ENQUEUED' RETURNING queue_name"
)


@lru_cache(maxsize=64)
def fork_chain(replacements: int) -> Chain:
    """The chain that records a fork: the new row, the source marked as forked from, and the
    copied steps, all together (``replacements`` child IDs swapped in the copies).

    ``prior``: this same fork (its token) inserted the row already, in an attempt whose
    acknowledgement was lost.
    """
    child = "child_workflow_id"
    if replacements:
        child = f"CASE child_workflow_id {' '.join(['WHEN ? THEN ?'] * replacements)} "
        child += "ELSE child_workflow_id END"
    copied = ", ".join(
        child if c == "child_workflow_id" else c
        for c in STEP_COLUMNS
        if c not in ("workflow_id", "owner_token")
    )
    return Chain(
        f"fork_{replacements}",
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
                "marked",
                "UPDATE {p}workflow_status SET was_forked_from = TRUE WHERE workflow_id = ? "
                "AND EXISTS (SELECT 1 FROM {@inserted}) RETURNING 1 AS one",
            ),
            Part(
                "copied",
                f"INSERT INTO {{p}}operation_outputs ({', '.join(STEP_COLUMNS)}) "
                f"SELECT ?, {copied}, NULL FROM {{p}}operation_outputs "
                "WHERE workflow_id = ? AND function_id < ? "
                "AND EXISTS (SELECT 1 FROM {@inserted}) RETURNING 1 AS one",
            ),
        ),
        "SELECT (SELECT COUNT(*) FROM {@inserted}) + (SELECT COUNT(*) FROM {@prior})",
    )


# -- delete and garbage collection ----------------------------------------------------------------

# What a deleted workflow takes with it: checkpoints, its events (and their history), streams,
# its inbox, and registrations of waiters for its result and of its own blocked recv.
WORKFLOW_OWNED_ROWS = (
    ("operation_outputs", "workflow_id"),
    ("workflow_events", "workflow_id"),
    ("workflow_events_history", "workflow_id"),
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
    text, params = listing(
        query, collate=db.dialect.binary_collation, postgres=db.dialect.name == "postgres"
    )
    return [workflow_row(r) for r in db.run(text, params).rows]


def _status_condition(
    statuses: tuple[str, ...] | None, conditions: list[str], params: list[Any]
) -> None:
    # DELAYED is stored as ENQUEUED with a start time still ahead (by the database's clock,
    # moved as a test moves workflow time: `offset_ms`); ENQUEUED then means one free to
    # start. Both together are simply the stored ENQUEUED.
    if statuses is None:
        return
    waiting = {S.ENQUEUED, S.DELAYED} & set(statuses)
    stored = [s for s in statuses if s not in waiting or len(waiting) == 2]
    stored = list(dict.fromkeys(S.ENQUEUED.value if s == S.DELAYED else s for s in stored))
    parts = [f"status IN ({marks(len(stored))})"] if stored else []
    params.extend(stored)
    if waiting == {S.ENQUEUED}:
        parts.append(
            "(status = 'ENQUEUED' AND (not_before_epoch_ms IS NULL "
            "OR not_before_epoch_ms <= {now} + ?))"
        )
        params.append(offset_ms())
    elif waiting == {S.DELAYED}:
        parts.append("(status = 'ENQUEUED' AND not_before_epoch_ms > {now} + ?)")
        params.append(offset_ms())
    conditions.append("(" + " OR ".join(parts) + ")" if parts else "1 = 0")


def listing(query: WorkflowQuery, *, collate: str, postgres: bool = False) -> tuple[str, list[Any]]:
    """The SELECT of a listing and its parameters (``collate``: the dialect's binary order;
    ``postgres``: JSON attributes are compared the PostgreSQL way)."""
    skipped = (INPUT_COLUMNS if not query.with_inputs else frozenset()) | (
        OUTPUT_COLUMNS if not query.with_outputs else frozenset()
    )
    columns = ", ".join("NULL" if c in skipped else c for c in WORKFLOW_COLUMNS)
    conditions, params = _conditions(query, collate)
    _attribute_conditions(query.attributes, conditions, params, postgres=postgres)
    text = LIST_WORKFLOWS.replace("{columns}", columns)
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    text += ORDER_NEWEST_FIRST if query.newest_first else ORDER_OLDEST_FIRST
    if query.limit is not None or query.offset:
        text += LIMIT_OFFSET
        params.extend((NO_LIMIT if query.limit is None else query.limit, query.offset or 0))
    return text, params


def _conditions(query: WorkflowQuery, collate: str) -> tuple[list[str], list[Any]]:
    """The WHERE conditions of a listing (joined by AND) and their parameters, in order."""
    conditions: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: tuple[Any, ...] | None) -> None:
        if values is not None:
            conditions.append(f"{column} IN ({marks(len(values))})" if values else "1 = 0")
            params.extend(values)

    any_of("workflow_id", query.workflow_ids)
    _status_condition(query.statuses, conditions, params)
    for column, field in (
        ("name", "names"), ("app_version", "app_versions"), ("authenticated_user", "users"),
        ("queue_name", "queue_names"), ("instance_id", "owners"), ("executor_id", "executor_ids"),
        ("forked_from", "forked_from"), ("parent_workflow_id", "parent_workflow_ids"),
        ("schedule_name", "schedule_names"),
    ):  # fmt: skip
        any_of(column, getattr(query, field))
    if query.queued_only:  # given statuses replace the default: the unfinished ones
        conditions.append(QUEUED if query.statuses is None else ON_QUEUE)
    if query.workflow_id_prefixes is not None:
        _prefix_condition(query.workflow_id_prefixes, conditions, params, collate)
    for field, if_true, if_false in FLAGS:
        flag = getattr(query, field)
        if flag is not None:
            conditions.append(if_true if flag else if_false)
    for column, lower, upper in TIME_BOUNDS:
        for bound, operator in ((getattr(query, lower), ">="), (getattr(query, upper), "<=")):
            if bound is not None:
                conditions.append(f"{column} {operator} ?")
                params.append(bound)
    return conditions, params


# An attribute equal to a JSON value: PostgreSQL compares jsonb; SQLite compares what
# json_extract gives on both sides, and json_type tells a JSON null from a missing key.
ATTRIBUTE_PG = "(CAST(attributes AS jsonb) -> ?) = CAST(? AS jsonb)"
ATTRIBUTE_SQLITE = (
    "(json_type(attributes, ?) IS NOT NULL AND json_extract(attributes, ?) IS json_extract(?, '$'))"
)


def _attribute_conditions(
    attributes: tuple[tuple[str, str], ...] | None,
    conditions: list[str],
    params: list[Any],
    *,
    postgres: bool,
) -> None:
    for key, value in attributes or ():
        if postgres:
            conditions.append(ATTRIBUTE_PG)
            params.extend((key, value))
        else:
            path = "$." + json.dumps(key)  # a quoted key: any characters are safe
            conditions.append(ATTRIBUTE_SQLITE)
            params.extend((path, path, value))


def _prefix_condition(
    prefixes: tuple[str, ...], conditions: list[str], params: list[Any], collate: str
) -> None:
    # Binary order: the IDs with a prefix are exactly those in [prefix, successor).
    alternatives = []
    for prefix in prefixes:
        if not prefix:  # every ID starts with the empty prefix
            alternatives.append("1 = 1")
            continue
        last = ord(prefix[-1])
        if last == 0x10FFFF:  # no successor character: match by the start instead
            alternatives.append(PREFIX_START)
            params.extend((len(prefix), prefix))
            continue
        alternatives.append(PREFIX_RANGE.replace("{collate}", collate))
        params.extend((prefix, prefix[:-1] + chr(last + 1)))
    conditions.append("(" + " OR ".join(alternatives) + ")" if alternatives else "1 = 0")


def list_steps(
    db: Database,
    workflow_id: str,
    *,
    with_outputs: bool,
    limit: int | None,
    offset: int | None,
) -> list[StepRow]:
    """See `Store.list_steps`."""
    skipped = frozenset() if with_outputs else STEP_PAYLOAD_COLUMNS
    columns = ", ".join("NULL" if c in skipped else c for c in STEP_COLUMNS)
    text = LIST_STEPS.replace("{columns}", columns)
    params: list[Any] = [workflow_id]
    if limit is not None or offset:
        text += LIMIT_OFFSET
        params.extend((NO_LIMIT if limit is None else limit, offset or 0))
    return [step_row(r) for r in db.run(text, params).rows]


def queue_counts(db: Database) -> list[QueueCounts]:
    """See `Store.queue_counts`."""
    return [QueueCounts(r[0], int(r[1]), int(r[2])) for r in db.run(QUEUE_COUNTS).rows]


def cancel_workflows(
    db: Database, workflow_ids: tuple[str, ...], *, with_children: bool
) -> list[str]:
    """See `Store.cancel_workflows`."""
    if not workflow_ids:
        return []
    statement = (CANCEL_TREE if with_children else CANCEL).replace(
        "{seeds}", marks(len(workflow_ids))
    )
    return [r[0] for r in db.run(statement, workflow_ids).rows]


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


def delay_workflow(db: Database, workflow_id: str, *, not_before_epoch_ms: int) -> str | None:
    """See `Store.delay_workflow`."""
    rows = db.run(DELAY, (not_before_epoch_ms, workflow_id)).rows
    return rows[0][0] if rows else None


SELECT_ATTRIBUTES = "SELECT attributes FROM {p}workflow_status WHERE workflow_id = ? {lock}"
SET_ATTRIBUTES = "UPDATE {p}workflow_status SET attributes = ? WHERE workflow_id = ?"


def update_attributes(
    db: Database, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool
) -> bool:
    """See `Store.update_workflow_attributes`."""

    def update(tx: Tx) -> bool:
        rows = tx.run(SELECT_ATTRIBUTES, (workflow_id,)).rows
        if not rows:
            return False
        value = attributes
        if merge:
            current = json.loads(rows[0][0]) if rows[0][0] else {}
            value = {**(current if isinstance(current, dict) else {}), **(attributes or {})}
        tx.run(SET_ATTRIBUTES, (None if value is None else json.dumps(value), workflow_id))
        return True

    return db.transaction(update)


def fork_workflow(
    db: Database,
    row: WorkflowRow,
    *,
    source_id: str,
    start_step: int,
    replacement_children: tuple[tuple[str, str], ...] = (),
) -> bool:
    """See `Store.fork_workflow`."""
    swapped = [workflow_id for pair in replacement_children for workflow_id in pair]
    params = {
        "prior": (row.workflow_id, row.owner_token),
        "inserted": workflow_params(row),
        "marked": (source_id,),
        "copied": (row.workflow_id, *swapped, source_id, start_step),
    }
    return bool(db.chain(fork_chain(len(replacement_children)), params).rows[0][0])


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
