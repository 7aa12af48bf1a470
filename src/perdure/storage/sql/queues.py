"""Queue definitions and the claim of ready queued workflows.

A claim reads the queue's *stored* definition, so every process enforces the same limits
whatever its own code says, and the database's clock, so rate limits do not depend on the
clocks of the machines. A claim under a global limit takes the queue's row lock first
(PostgreSQL; SQLite's write transactions are serial already), so claims never overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perdure.storage.database import Database, Tx
from perdure.storage.records import (
    QUEUE_COLUMNS,
    Occupancy,
    QueueClaim,
    QueueRecord,
    WorkflowRow,
)
from perdure.storage.sql.rows import WF_COLS, marks, workflow_row

_QUEUE_COLS = ", ".join(QUEUE_COLUMNS)
# Rows outside partitioned queues have no key; '' stands for it, so one statement serves both.
_IN_PARTITION = "COALESCE(queue_partition_key, '') = ?"

SAVE_QUEUE = (
    f"INSERT INTO {{p}}queues ({_QUEUE_COLS}, updated_at) "
    f"VALUES ({marks(len(QUEUE_COLUMNS))}, {{now}}) ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*QUEUE_COLUMNS[1:], "updated_at"))
)
SELECT_QUEUES = f"SELECT {_QUEUE_COLS} FROM {{p}}queues ORDER BY name"
SELECT_NAMED_QUEUES = (
    f"SELECT {_QUEUE_COLS} FROM {{p}}queues WHERE name IN ({{names}}) ORDER BY name"
)
# The database's clock and the queue's stored definition (NULLs if none is stored).
CLOCK_AND_QUEUE = (
    "SELECT {now}, " + ", ".join(f"q.{c}" for c in QUEUE_COLUMNS) + " FROM (SELECT 1 AS one) "
    "AS x LEFT JOIN {p}queues q ON q.name = ?"
)
LOCK_QUEUE = "SELECT name FROM {p}queues WHERE name = ? {lock}"
# What a claim whose commit was lost took: found by its token, so nothing is claimed twice.
CLAIMED_BY_TOKEN = (
    f"SELECT {WF_COLS} FROM {{p}}workflow_status WHERE instance_id = ? AND status = 'PENDING' "
    "AND owner_token = ?"
)

READY = "status = 'ENQUEUED' AND (not_before_epoch_ms IS NULL OR not_before_epoch_ms <= ?)"
READY_PARTITIONS = (
    "SELECT DISTINCT COALESCE(queue_partition_key, '') FROM {p}workflow_status "
    f"WHERE queue_name = ? AND {READY}"
)
# Running in every process, and in the claiming process (worker concurrency is per process).
COUNT_RUNNING = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN instance_id = ? THEN 1 ELSE 0 END), 0) "
    "FROM {p}workflow_status WHERE queue_name = ? AND status = 'PENDING' AND " + _IN_PARTITION
)
RECENT_STARTS = (
    "SELECT dequeued_at_epoch_ms FROM {p}workflow_status "
    f"WHERE queue_name = ? AND dequeued_at_epoch_ms > ? AND {_IN_PARTITION} "
    "ORDER BY dequeued_at_epoch_ms"
)
# Claim the first ready workflows this process can run, by priority, then FIFO; rows another
# claim holds are skipped (PostgreSQL). The pick is materialized: as an IN (...) subquery the
# planner may run it more than once, claiming more than LIMIT rows. A workflow's own timeout
# starts now; an unversioned workflow takes this process's version.
CLAIM = (
    "WITH picked AS MATERIALIZED (SELECT workflow_id FROM {p}workflow_status "
    f"WHERE queue_name = ? AND {READY} AND {_IN_PARTITION} AND name IN ({{names}}) "
    "AND app_version IN ('', ?) ORDER BY priority, created_at LIMIT ? {skip_locked}) "
    "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = ?, instance_id = ?, "
    "owner_token = ?, dequeued_at_epoch_ms = ?, updated_at = ?, "
    "workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NULL "
    "THEN workflow_deadline_epoch_ms ELSE ? + workflow_timeout_ms END, "
    "app_version = CASE WHEN app_version = '' THEN ? ELSE app_version END "
    "WHERE workflow_id IN (SELECT workflow_id FROM picked) AND status = 'ENQUEUED' "
    f"RETURNING {WF_COLS}"
)
NEXT_READY_AT = (
    "SELECT MIN(not_before_epoch_ms) FROM {p}workflow_status "
    "WHERE queue_name = ? AND status = 'ENQUEUED' AND not_before_epoch_ms > ?"
)


def queue_record(values: tuple[Any, ...]) -> QueueRecord:
    """A `QueueRecord` from a row selected in `QUEUE_COLUMNS` order."""
    name, concurrency, workers, limit, period, priority, partition, polling = values
    return QueueRecord(
        name=name,
        concurrency=concurrency,
        worker_concurrency=workers,
        rate_limit=limit,
        rate_period_sec=float(period) if period is not None else None,
        priority_enabled=bool(priority),
        partition_queue=bool(partition),
        polling_interval_sec=float(polling),
    )


def save_queue(db: Database, record: QueueRecord) -> None:
    """See `Store.save_queue`."""
    db.run(SAVE_QUEUE, tuple(getattr(record, c) for c in QUEUE_COLUMNS))


def list_queues(db: Database, names: tuple[str, ...] | None) -> list[QueueRecord]:
    """See `Store.list_queues`."""
    if names is None:
        rows = db.run(SELECT_QUEUES).rows
    elif not names:
        return []
    else:
        rows = db.run(SELECT_NAMED_QUEUES.replace("{names}", marks(len(names))), names).rows
    return [queue_record(r) for r in rows]


def claim_queued(
    db: Database, claim: QueueClaim, admit: Callable[[QueueRecord, Occupancy], int]
) -> list[WorkflowRow]:
    """See `Store.claim_queued`."""
    if not claim.names or claim.batch <= 0:
        return []

    def work(tx: Tx) -> list[WorkflowRow]:
        if tx.attempt > 1:  # did the attempt whose commit was lost claim anything?
            found = tx.run(CLAIMED_BY_TOKEN, (claim.instance_id, claim.token)).rows
            if found:
                return _ordered([workflow_row(r) for r in found])
        row = tx.run(CLOCK_AND_QUEUE, (claim.default.name,)).rows[0]
        now = int(row[0])
        record = queue_record(row[1:]) if row[1] is not None else claim.default
        if record.is_global and db.dialect.row_locks:
            tx.run(LOCK_QUEUE, (record.name,))
        partitions = [""]
        if record.partition_queue:
            ready = tx.run(READY_PARTITIONS, (record.name, now)).rows
            partitions = sorted(r[0] for r in ready)
        claimed: list[WorkflowRow] = []
        for key in partitions:
            room = claim.batch - len(claimed)
            if room <= 0:
                break
            count = min(room, admit(record, _occupancy(tx, claim, record, key, now)))
            if count > 0:
                claimed.extend(_claim(tx, claim, record.name, key, count=count, now=now))
        return _ordered(claimed)

    return db.transaction(work)


def _occupancy(tx: Tx, claim: QueueClaim, record: QueueRecord, key: str, now: int) -> Occupancy:
    running = running_here = 0
    if record.concurrency is not None or record.worker_concurrency is not None:
        rows = tx.run(COUNT_RUNNING, (claim.instance_id, record.name, key)).rows
        running, running_here = int(rows[0][0]), int(rows[0][1])
    starts: tuple[int, ...] = ()
    if record.rate_limit is not None and record.rate_period_sec is not None:
        since = now - round(record.rate_period_sec * 1000)
        rows = tx.run(RECENT_STARTS, (record.name, since, key)).rows
        starts = tuple(int(r[0]) for r in rows)
    return Occupancy(key or None, running, running_here, starts, now)


def _claim(
    tx: Tx, claim: QueueClaim, queue_name: str, key: str, *, count: int, now: int
) -> list[WorkflowRow]:
    statement = CLAIM.replace("{names}", marks(len(claim.names)))
    params = (
        queue_name, now, key, *claim.names, claim.app_version, count,
        claim.executor_id, claim.instance_id, claim.token, now, now, now, claim.app_version,
    )  # fmt: skip
    return [workflow_row(r) for r in tx.run(statement, params).rows]


def _ordered(rows: list[WorkflowRow]) -> list[WorkflowRow]:
    return sorted(rows, key=lambda row: (row.priority, row.created_at))


def next_ready_at(db: Database, queue_name: str, after_ms: int) -> int | None:
    """See `Store.next_ready_at`."""
    rows = db.run(NEXT_READY_AT, (queue_name, after_ms)).rows
    return int(rows[0][0]) if rows and rows[0][0] is not None else None
