"""The queries of queues, as a mixin of the SQL store: definitions, enqueue and the claim."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from perdure.clock import now_ms
from perdure.error import DBOSQueueDeduplicatedError
from perdure.storage.core_queries import CoreQueries
from perdure.storage.interface import (
    QUEUE_COLUMNS,
    WORKFLOW_COLUMNS,
    ClaimRequest,
    Occupancy,
    QueueRecord,
    StartOutcome,
    StepRow,
    WorkflowRow,
)
from perdure.storage.sql_backend import UNIQUE_VIOLATION, Statements, workflow_row

_WF_COLS = ", ".join(WORKFLOW_COLUMNS)
_QUEUE_COLS = ", ".join(QUEUE_COLUMNS)
# Rows outside partitioned queues have no key; '' stands for it, so one statement serves both.
_IN_PARTITION = "COALESCE(queue_partition_key, '') = ?"

SAVE_QUEUE = (
    f"INSERT INTO {{p}}queues ({_QUEUE_COLS}, updated_at) "
    f"VALUES ({', '.join('?' for _ in QUEUE_COLUMNS)}, ?) ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*QUEUE_COLUMNS[1:], "updated_at"))
)
SELECT_QUEUE = f"SELECT {_QUEUE_COLS} FROM {{p}}queues WHERE name = ?"
SELECT_QUEUES = f"SELECT {_QUEUE_COLS} FROM {{p}}queues ORDER BY name"
# PostgreSQL: claims of a queue with global limits take turns on its definition's row.
LOCK_QUEUE = "SELECT name FROM {p}queues WHERE name = ? FOR UPDATE"

READY = "status = 'ENQUEUED' AND (not_before_epoch_ms IS NULL OR not_before_epoch_ms <= ?)"
READY_PARTITIONS = (
    "SELECT DISTINCT COALESCE(queue_partition_key, '') FROM {p}workflow_status "
    f"WHERE queue_name = ? AND {READY}"
)
COUNT_RUNNING = (
    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN executor_id = ? THEN 1 ELSE 0 END), 0) "
    "FROM {p}workflow_status WHERE queue_name = ? AND status = 'PENDING' AND " + _IN_PARTITION
)
RECENT_STARTS = (
    "SELECT dequeued_at_epoch_ms FROM {p}workflow_status "
    f"WHERE queue_name = ? AND dequeued_at_epoch_ms > ? AND {_IN_PARTITION} "
    "ORDER BY dequeued_at_epoch_ms"
)
# Claim the first ready workflows by priority, then FIFO. A workflow's own timeout starts now.
_CLAIM_SET = (
    "SET status = 'PENDING', executor_id = ?, instance_id = ?, dequeued_at_epoch_ms = ?, "
    "updated_at = ?, workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NULL "
    "THEN workflow_deadline_epoch_ms ELSE ? + workflow_timeout_ms END"
)
_PICK = (
    "SELECT workflow_id FROM {p}workflow_status "
    f"WHERE queue_name = ? AND {READY} AND {_IN_PARTITION} ORDER BY priority, created_at LIMIT ?"
)
# SQLite needs no row locks: BEGIN IMMEDIATE makes the claim the only writer of the file.
CLAIM = (
    f"UPDATE {{p}}workflow_status {_CLAIM_SET} "
    f"WHERE status = 'ENQUEUED' AND workflow_id IN ({_PICK}) RETURNING {_WF_COLS}"
)
# PostgreSQL: rows another claim holds are skipped. The pick is a materialized CTE: as an
# IN (...) subquery the planner may run it more than once, claiming more than LIMIT rows.
CLAIM_SKIP_LOCKED = (
    f"WITH picked AS MATERIALIZED ({_PICK} FOR UPDATE SKIP LOCKED) "
    f"UPDATE {{p}}workflow_status AS w {_CLAIM_SET} FROM picked "
    "WHERE w.workflow_id = picked.workflow_id "
    f"RETURNING {', '.join('w.' + c for c in WORKFLOW_COLUMNS)}"
)
NEXT_READY_AT = (
    "SELECT MIN(not_before_epoch_ms) FROM {p}workflow_status "
    "WHERE queue_name = ? AND status = 'ENQUEUED' AND not_before_epoch_ms > ?"
)


def _is_duplicate_key(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return getattr(exc, "sqlstate", None) == UNIQUE_VIOLATION


def _queue_record(values: tuple[Any, ...]) -> QueueRecord:
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


class QueueQueries(CoreQueries):
    """The `QueueStore` methods; extends the core inserts, whose rows may now be ENQUEUED on a
    queue, to refuse a second unfinished workflow with the same deduplication ID."""

    # -- inserting: a second unfinished workflow with a queue's deduplication ID is refused --

    def insert_workflow(self, row: WorkflowRow) -> StartOutcome:
        try:
            return super().insert_workflow(row)
        except Exception as exc:
            if _is_deduplicated(row, exc):
                raise _deduplicated_error(row) from exc
            raise

    def insert_child_workflow(self, row: WorkflowRow, parent_step: StepRow) -> StartOutcome:
        try:
            return super().insert_child_workflow(row, parent_step)
        except Exception as exc:
            if _is_deduplicated(row, exc):
                raise _deduplicated_error(row) from exc
            raise

    # -- definitions ---------------------------------------------------------------------------

    def save_queue(self, record: QueueRecord) -> None:
        params = (*(getattr(record, c) for c in QUEUE_COLUMNS), now_ms())
        self._autocommit(self._q(SAVE_QUEUE), params)

    def get_queue(self, name: str) -> QueueRecord | None:
        rows, _ = self._autocommit(self._q(SELECT_QUEUE), (name,))
        return _queue_record(rows[0]) if rows else None

    def list_queues(self) -> list[QueueRecord]:
        rows, _ = self._autocommit(self._q(SELECT_QUEUES), ())
        return [_queue_record(r) for r in rows]

    # -- claiming --------------------------------------------------------------------------------

    def claim_queued(
        self, request: ClaimRequest, admit: Callable[[Occupancy], int]
    ) -> list[WorkflowRow]:
        def claim(tx: Statements) -> list[WorkflowRow]:
            if request.serialize and self.backend_name == "postgres":
                tx.run(self._q(LOCK_QUEUE), (request.queue_name,))
            partitions = [""]
            if request.partitioned:
                rows, _ = tx.run(self._q(READY_PARTITIONS), (request.queue_name, request.now_ms))
                partitions = sorted(r[0] for r in rows)
            claimed: list[WorkflowRow] = []
            for key in partitions:
                count = admit(self._occupancy(tx, request, key))
                if count > 0:
                    claimed.extend(self._claim(tx, request, key, count))
            return claimed

        return self._transaction(claim)

    def _occupancy(self, tx: Statements, request: ClaimRequest, key: str) -> Occupancy:
        running = running_here = 0
        if request.count_running:
            params = (request.executor_id, request.queue_name, key)
            rows, _ = tx.run(self._q(COUNT_RUNNING), params)
            running, running_here = int(rows[0][0]), int(rows[0][1])
        starts: tuple[int, ...] = ()
        if request.window_ms is not None:
            since = request.now_ms - request.window_ms
            rows, _ = tx.run(self._q(RECENT_STARTS), (request.queue_name, since, key))
            starts = tuple(int(r[0]) for r in rows)
        return Occupancy(key or None, running, running_here, starts)

    def _claim(
        self, tx: Statements, request: ClaimRequest, key: str, count: int
    ) -> list[WorkflowRow]:
        now = request.now_ms
        claim = (request.executor_id, request.instance_id, now, now, now)
        pick = (request.queue_name, now, key, count)
        if self.backend_name == "postgres":
            rows, _ = tx.run(self._q(CLAIM_SKIP_LOCKED), (*pick, *claim))
        else:
            rows, _ = tx.run(self._q(CLAIM), (*claim, *pick))
        claimed = [workflow_row(r) for r in rows]
        return sorted(claimed, key=lambda row: (row.priority, row.created_at))

    def next_ready_at(self, queue_name: str, now_ms: int) -> int | None:
        rows, _ = self._autocommit(self._q(NEXT_READY_AT), (queue_name, now_ms))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None


def _is_deduplicated(row: WorkflowRow, exc: Exception) -> bool:
    """Whether an insert failed on the unique index of unfinished deduplication IDs."""
    return row.deduplication_id is not None and _is_duplicate_key(exc)


def _deduplicated_error(row: WorkflowRow) -> DBOSQueueDeduplicatedError:
    return DBOSQueueDeduplicatedError(
        row.workflow_id, row.queue_name or "", row.deduplication_id or ""
    )
