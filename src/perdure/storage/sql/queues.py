"""Queue definitions and the claim of ready queued workflows.

A claim reads the queue's *stored* definition, so every process enforces the same limits
whatever its own code says, and the database's clock, so rate limits do not depend on the
clocks of the machines. A claim under a global limit takes the queue's row lock first
(PostgreSQL; SQLite's write transactions are serial already), so claims never overlap.

On a partitioned queue the claim goes through the partitions with ready work, the one whose
oldest ready workflow waited longest first: each gets what both its own limits and the
whole queue's (counting what the claim took from the partitions before it) allow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from perdure.storage.database import Database, Tx
from perdure.storage.records import (
    QUEUE_COLUMNS,
    Occupancy,
    QueueClaim,
    QueueRecord,
    QueueReplace,
    ScopeLimits,
    WorkflowRow,
)
from perdure.storage.sql.rows import WF_COLS, marks, workflow_row
from perdure.storage.sql.versions import LATEST_NAME

_QUEUE_COLS = ", ".join(QUEUE_COLUMNS)
# Rows enqueued without a key (or before the queue was partitioned) form the partition ''.
_KEY = "COALESCE(queue_partition_key, '')"
_IN_PARTITION = f"{_KEY} = ?"

_INSERT_QUEUE = (
    f"INSERT INTO {{p}}queues ({_QUEUE_COLS}, updated_at) "
    f"VALUES ({marks(len(QUEUE_COLUMNS))}, {{now}})"
)
SAVE_QUEUE = f"{_INSERT_QUEUE} ON CONFLICT (name) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in (*QUEUE_COLUMNS[1:], "updated_at")
)
ADD_QUEUE = f"{_INSERT_QUEUE} ON CONFLICT (name) DO NOTHING"
LATEST_VERSION = f"SELECT {LATEST_NAME}"
SELECT_QUEUES = f"SELECT {_QUEUE_COLS} FROM {{p}}queues ORDER BY name"
SELECT_NAMED_QUEUES = (
    f"SELECT {_QUEUE_COLS} FROM {{p}}queues WHERE name IN ({{names}}) ORDER BY name"
)
UPDATE_QUEUE = (
    "UPDATE {p}queues SET "
    + ", ".join(f"{c} = ?" for c in QUEUE_COLUMNS[1:])
    + ", updated_at = {now} WHERE name = ?"
)
DELETE_QUEUE = "DELETE FROM {p}queues WHERE name = ?"
# The database's clock and the queue's stored definition (NULLs if none is stored).
CLOCK_AND_QUEUE = (
    "SELECT {now}, " + ", ".join(f"q.{c}" for c in QUEUE_COLUMNS) + " FROM (SELECT 1 AS one) "
    "AS x LEFT JOIN {p}queues q ON q.name = ?"
)
# A definition, locked (PostgreSQL) for a change or a claim under a global limit; a claim reads
# it again so: what it read before it waited for the lock may have changed or gone meanwhile.
LOCK_QUEUE = f"SELECT {_QUEUE_COLS} FROM {{p}}queues WHERE name = ? {{lock}}"
# What a claim whose commit was lost took: found by its token, so nothing is claimed twice.
CLAIMED_BY_TOKEN = (
    f"SELECT {WF_COLS} FROM {{p}}workflow_status WHERE instance_id = ? AND status = 'PENDING' "
    "AND owner_token = ?"
)

READY = "status = 'ENQUEUED' AND (not_before_epoch_ms IS NULL OR not_before_epoch_ms <= ?)"
# The partitions with ready work, the one holding the most urgent, longest-waiting first.
READY_PARTITIONS = (
    f"SELECT {_KEY} FROM {{p}}workflow_status WHERE queue_name = ? AND {READY} "
    f"GROUP BY {_KEY} ORDER BY MIN(priority), MIN(created_at), 1"
)
# Running in every process, and in the claiming process (worker concurrency is per process).
COUNT_RUNNING = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN instance_id = ? THEN 1 ELSE 0 END), 0) "
    "FROM {p}workflow_status WHERE queue_name = ? AND status = 'PENDING'"
)
COUNT_RUNNING_IN_PARTITION = f"{COUNT_RUNNING} AND {_IN_PARTITION}"
_RECENT = (
    "SELECT dequeued_at_epoch_ms FROM {p}workflow_status "
    "WHERE queue_name = ? AND dequeued_at_epoch_ms > ?"
)
RECENT_STARTS = f"{_RECENT} ORDER BY dequeued_at_epoch_ms"
RECENT_STARTS_IN_PARTITION = f"{_RECENT} AND {_IN_PARTITION} ORDER BY dequeued_at_epoch_ms"
# Claim the first ready workflows this process can run, by priority, then FIFO; rows another
# claim holds are skipped (PostgreSQL). The pick is materialized: as an IN (...) subquery the
# planner may run it more than once, claiming more than LIMIT rows. A workflow's own timeout
# starts now. An unversioned workflow is claimed only by a process of the latest application
# version (or of any, while none is registered), as in DBOS, and takes that version.
_RUNS_VERSION = f"(app_version = ? OR (app_version = '' AND COALESCE({LATEST_NAME}, ?) = ?))"
_CLAIM = (
    "WITH picked AS MATERIALIZED (SELECT workflow_id FROM {p}workflow_status "
    f"WHERE queue_name = ? AND {READY}{{partition}} AND name IN ({{names}}) "
    f"AND {_RUNS_VERSION} ORDER BY priority, created_at LIMIT ? {{skip_locked}}) "
    "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = ?, instance_id = ?, "
    "owner_token = ?, dequeued_at_epoch_ms = ?, updated_at = ?, "
    "workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NULL "
    "THEN workflow_deadline_epoch_ms ELSE ? + workflow_timeout_ms END, "
    "app_version = CASE WHEN app_version = '' THEN ? ELSE app_version END "
    "WHERE workflow_id IN (SELECT workflow_id FROM picked) AND status = 'ENQUEUED' "
    f"RETURNING {WF_COLS}"
)
CLAIM = _CLAIM.replace("{partition}", "")
CLAIM_IN_PARTITION = _CLAIM.replace("{partition}", f" AND {_IN_PARTITION}")
NEXT_READY_AT = (
    "SELECT MIN(not_before_epoch_ms) FROM {p}workflow_status "
    "WHERE queue_name = ? AND status = 'ENQUEUED' AND not_before_epoch_ms > ?"
)


def queue_record(values: tuple[Any, ...]) -> QueueRecord:
    """A `QueueRecord` from a row selected in `QUEUE_COLUMNS` order."""
    fields = dict(zip(QUEUE_COLUMNS, values, strict=True))
    for flag in ("priority_enabled", "partition_queue"):
        fields[flag] = bool(fields[flag])
    for seconds in ("rate_period_sec", "polling_interval_sec", "partition_rate_period_sec"):
        if fields[seconds] is not None:
            fields[seconds] = float(fields[seconds])
    return QueueRecord(**fields)


def _values(record: QueueRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, c) for c in QUEUE_COLUMNS)


def save_queue(
    db: Database, record: QueueRecord, *, replace_existing: QueueReplace, app_version: str
) -> QueueRecord:
    """See `Store.save_queue`."""

    def work(tx: Tx) -> QueueRecord:
        overwrite = replace_existing == "always"
        if replace_existing == "if_latest":
            latest = tx.run(LATEST_VERSION).rows[0][0]
            overwrite = latest is None or latest == app_version
        tx.run(SAVE_QUEUE if overwrite else ADD_QUEUE, _values(record))
        return queue_record(
            tx.run(SELECT_NAMED_QUEUES.replace("{names}", "?"), (record.name,)).rows[0]
        )

    return db.transaction(work)


def list_queues(db: Database, names: tuple[str, ...] | None) -> list[QueueRecord]:
    """See `Store.list_queues`."""
    if names is None:
        rows = db.run(SELECT_QUEUES).rows
    elif not names:
        return []
    else:
        rows = db.run(SELECT_NAMED_QUEUES.replace("{names}", marks(len(names))), names).rows
    return [queue_record(r) for r in rows]


def change_queue(
    db: Database, name: str, change: Callable[[QueueRecord], QueueRecord]
) -> QueueRecord | None:
    """See `Store.change_queue`."""

    def work(tx: Tx) -> QueueRecord | None:
        rows = tx.run(LOCK_QUEUE, (name,)).rows
        if not rows:
            return None
        changed = change(queue_record(rows[0]))
        tx.run(UPDATE_QUEUE, (*_values(changed)[1:], name))
        return changed

    return db.transaction(work)


def delete_queue(db: Database, name: str) -> bool:
    """See `Store.delete_queue`."""
    return db.run(DELETE_QUEUE, (name,)).changed == 1


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
        now = int(row[0]) + claim.clock_offset_ms
        if row[1] is None and claim.stored_only:
            return []
        record = queue_record(row[1:]) if row[1] is not None else claim.default
        if record.is_global and db.dialect.row_locks:
            locked = tx.run(LOCK_QUEUE, (record.name,)).rows
            if locked:
                record = queue_record(locked[0])
            elif claim.stored_only:
                return []
            else:
                record = claim.default
        whole = _occupancy(
            tx, claim, record.name, limits=record.whole_queue_limits, key=None, now=now
        )
        if not record.partitioned:
            count = min(claim.batch, admit(record, whole))
            return _claim(tx, claim, record.name, None, count=count, now=now)
        return _ordered(_claim_partitions(tx, claim, record, whole, admit))

    return db.transaction(work)


def _claim_partitions(
    tx: Tx,
    claim: QueueClaim,
    record: QueueRecord,
    whole: Occupancy,
    admit: Callable[[QueueRecord, Occupancy], int],
) -> list[WorkflowRow]:
    now = whole.now_ms
    claimed: list[WorkflowRow] = []
    for (key,) in tx.run(READY_PARTITIONS, (record.name, now)).rows:
        room = claim.batch - len(claimed)
        # A full queue leaves nothing for any partition: an empty one would get nothing either.
        empty = Occupancy(key, 0, 0, (), now, whole=whole)
        if room <= 0 or (record.whole_queue_limits.limited and admit(record, empty) <= 0):
            break
        occupancy = _occupancy(
            tx, claim, record.name, limits=record.partition_limits, key=key, now=now
        )
        count = min(room, admit(record, replace(occupancy, whole=whole)))
        taken = _claim(tx, claim, record.name, key, count=count, now=now)
        claimed.extend(taken)
        whole = whole.plus_started(len(taken))
    return claimed


def _occupancy(
    tx: Tx, claim: QueueClaim, name: str, *, limits: ScopeLimits, key: str | None, now: int
) -> Occupancy:
    """The occupancy of the whole queue (``key`` None) or of one partition, reading only the
    counts ``limits`` need."""
    in_partition = () if key is None else (key,)
    running = running_here = 0
    if limits.counts_running:
        statement = COUNT_RUNNING if key is None else COUNT_RUNNING_IN_PARTITION
        rows = tx.run(statement, (claim.instance_id, name, *in_partition)).rows
        running, running_here = int(rows[0][0]), int(rows[0][1])
    starts: tuple[int, ...] = ()
    period_ms = limits.rate_period_ms
    if period_ms is not None:
        statement = RECENT_STARTS if key is None else RECENT_STARTS_IN_PARTITION
        rows = tx.run(statement, (name, now - period_ms, *in_partition)).rows
        starts = tuple(int(r[0]) for r in rows)
    return Occupancy(key or None, running, running_here, starts, now)


def _claim(
    tx: Tx, claim: QueueClaim, queue_name: str, key: str | None, *, count: int, now: int
) -> list[WorkflowRow]:
    if count <= 0:
        return []
    statement = (CLAIM if key is None else CLAIM_IN_PARTITION).replace(
        "{names}", marks(len(claim.names))
    )
    in_partition = () if key is None else (key,)
    params = (
        queue_name, now, *in_partition, *claim.names, *(claim.app_version,) * 3, count,
        claim.executor_id, claim.instance_id, claim.token, now, now, now, claim.app_version,
    )  # fmt: skip
    return _ordered([workflow_row(r) for r in tx.run(statement, params).rows])


def _ordered(rows: list[WorkflowRow]) -> list[WorkflowRow]:
    return sorted(rows, key=lambda row: (row.priority, row.created_at))


def next_ready_at(db: Database, queue_name: str, after_ms: int) -> int | None:
    """See `Store.next_ready_at`."""
    rows = db.run(NEXT_READY_AT, (queue_name, after_ms)).rows
    return int(rows[0][0]) if rows and rows[0][0] is not None else None
