"""The `SystemStore` logic both backends share; they supply connections and SQL dialect."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from perdure.clock import now_ms
from perdure.error import DBOSWorkflowConflictIDError
from perdure.storage import statements as sql
from perdure.storage.interface import (
    StartOutcome,
    StepRow,
    Unrecorded,
    WorkflowRow,
    WorkflowStatusString,
)

T = TypeVar("T")
Params = Sequence[Any]
Rows = list[tuple[Any, ...]]


class Statements(abc.ABC):
    """Runs statements: one at a time in autocommit, or several inside one transaction."""

    @abc.abstractmethod
    def run(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        """Execute one statement; return its rows (if any) and the affected row count."""


class SqlStore(abc.ABC):
    """Implements `SystemStore` over a backend that provides `_autocommit` and `_transaction`."""

    url: str
    prefix: str = ""
    placeholder: str = "?"

    def __init__(self) -> None:
        # Test seam: called with the text of every statement sent to the database.
        self.statement_listener: Callable[[str], None] | None = None

    # -- backend hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _autocommit(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        """Run one statement in its own transaction (one round trip)."""

    @abc.abstractmethod
    def _transaction(self, work: Callable[[Statements], T]) -> T:
        """Run ``work`` inside one write transaction, committing if it returns."""

    @abc.abstractmethod
    def migrate(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def _notify_statement(self, sql_text: str) -> None:
        if self.statement_listener is not None:
            self.statement_listener(sql_text)

    def _q(self, sql_text: str) -> str:
        return _render(sql_text, self.prefix, self.placeholder)

    # -- SystemStore -----------------------------------------------------------------------------

    def reset(self) -> None:
        def drop(tx: Statements) -> None:
            for statement in (*sql.DROP_TABLES, "DROP TABLE IF EXISTS {p}schema_migrations"):
                tx.run(self._q(statement), ())

        self._transaction(drop)

    def insert_workflow(self, row: WorkflowRow) -> StartOutcome:
        _, count = self._autocommit(self._q(sql.INSERT_WORKFLOW), _workflow_params(row))
        if count == 1:
            return StartOutcome(created=True, row=row)
        existing = self.get_workflow(row.workflow_id)
        if existing is None:  # deleted between the two statements: insert again
            return self.insert_workflow(row)
        return StartOutcome(created=False, row=existing)

    def insert_child_workflow(self, row: WorkflowRow, parent_step: StepRow) -> StartOutcome:
        def insert(tx: Statements) -> bool:
            _, recorded = tx.run(self._q(sql.INSERT_STEP), _step_params(parent_step))
            if recorded == 0:
                raise DBOSWorkflowConflictIDError(parent_step.workflow_id)
            _, created = tx.run(self._q(sql.INSERT_WORKFLOW), _workflow_params(row))
            return created == 1

        if self._transaction(insert):
            return StartOutcome(created=True, row=row)
        existing = self.get_workflow(row.workflow_id)
        assert existing is not None, "a child workflow row vanished inside its parent's insert"  # noqa: S101
        return StartOutcome(created=False, row=existing)

    def record_step(self, step: StepRow) -> str | None:
        params = (*_step_params(step), step.workflow_id)
        _, count = self._autocommit(self._q(sql.INSERT_STEP_IF_PENDING), params)
        if count == 1:
            return None
        status = self._autocommit(self._q(sql.SELECT_STATUS), (step.workflow_id,))[0]
        if status and status[0][0] == WorkflowStatusString.CANCELLED:
            return Unrecorded.CANCELLED
        return Unrecorded.CONFLICT

    def load_steps(self, workflow_id: str) -> list[StepRow]:
        rows, _ = self._autocommit(self._q(sql.SELECT_STEPS), (workflow_id,))
        return [_step_row(r) for r in rows]

    def get_step(self, workflow_id: str, function_id: int) -> StepRow | None:
        rows, _ = self._autocommit(self._q(sql.SELECT_STEP), (workflow_id, function_id))
        return _step_row(rows[0]) if rows else None

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        rows, _ = self._autocommit(self._q(sql.SELECT_WORKFLOW), (workflow_id,))
        return _workflow_row(rows[0]) if rows else None

    def complete_workflow(
        self, workflow_id: str, *, status: str, output: bytes | None, error: bytes | None
    ) -> bool:
        params = (status, output, error, now_ms(), workflow_id)
        return self._autocommit(self._q(sql.COMPLETE_WORKFLOW), params)[1] == 1

    def set_status(self, workflow_id: str, status: str, *, only_from: tuple[str, ...]) -> bool:
        statement = sql.SET_STATUS + "status IN (" + ", ".join("?" for _ in only_from) + ")"
        params = (status, now_ms(), workflow_id, *only_from)
        return self._autocommit(self._q(statement), params)[1] == 1

    def pending_workflows(self, executor_id: str, instance_id: str) -> list[tuple[str, str]]:
        rows, _ = self._autocommit(self._q(sql.PENDING_OF_EXECUTOR), (executor_id, instance_id))
        return [(r[0], r[1]) for r in rows]

    def claim_for_recovery(
        self, workflow_id: str, instance_id: str, *, dead_owner: str, max_recovery_attempts: int
    ) -> WorkflowRow | None:
        params = (
            instance_id,
            now_ms(),
            max_recovery_attempts + 1,  # the first execution counts as attempt 1
            workflow_id,
            dead_owner,
        )
        rows, _ = self._autocommit(self._q(sql.CLAIM_FOR_RECOVERY), params)
        return _workflow_row(rows[0]) if rows else None


@cache
def _render(sql_text: str, prefix: str, placeholder: str) -> str:
    return sql.render(sql_text, prefix=prefix, placeholder=placeholder)


def _workflow_params(row: WorkflowRow) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in WorkflowRow.__dataclass_fields__)


def _step_params(step: StepRow) -> tuple[Any, ...]:
    return tuple(getattr(step, name) for name in StepRow.__dataclass_fields__)


def _plain(values: tuple[Any, ...]) -> list[Any]:
    return [bytes(v) if isinstance(v, memoryview) else v for v in values]


def _workflow_row(values: tuple[Any, ...]) -> WorkflowRow:
    return WorkflowRow(*_plain(values))


def _step_row(values: tuple[Any, ...]) -> StepRow:
    return StepRow(*_plain(values))
