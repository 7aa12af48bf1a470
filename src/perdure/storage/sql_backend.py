"""What every SQL backend provides: running statements, in autocommit or in a transaction."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from perdure.storage import statements as sql
from perdure.storage.interface import StepRow, Unrecorded, WorkflowRow, WorkflowStatusString

T = TypeVar("T")
# SQLSTATE of a unique violation (PostgreSQL; SQLite raises IntegrityError instead).
UNIQUE_VIOLATION = "23505"
Params = Sequence[Any]
Rows = list[tuple[Any, ...]]


class Statements(abc.ABC):
    """Runs statements inside one transaction."""

    @abc.abstractmethod
    def run(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        """Execute one statement; return its rows (if any) and the affected row count."""


class SqlBackend(abc.ABC):
    """Connections and dialect of one database; the query mixins build on these hooks."""

    url: str
    #: The backend's name ("sqlite" or "postgres"): its migrations folder and SQL dialect.
    backend_name: str = "sqlite"
    prefix: str = ""
    placeholder: str = "?"

    def __init__(self) -> None:
        # Test seam: called with the text of every statement sent to the database.
        self.statement_listener: Callable[[str], None] | None = None

    @abc.abstractmethod
    def _autocommit(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        """Run one statement in its own transaction (one round trip)."""

    @abc.abstractmethod
    def _transaction(self, work: Callable[[Statements], T]) -> T:
        """Run ``work`` inside one write transaction, committing if it returns."""

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; concurrent callers serialise."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every table Perdure owns."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def _notify_statement(self, sql_text: str) -> None:
        if self.statement_listener is not None:
            self.statement_listener(sql_text)

    def _q(self, sql_text: str) -> str:
        """``sql_text`` with this backend's table prefix and placeholder style."""
        return _render(sql_text, self.prefix, self.placeholder)

    def unrecorded_reason(self, workflow_id: str) -> str:
        """Why a step of this workflow could not be recorded (an `Unrecorded` value)."""
        status = self._autocommit(self._q(sql.SELECT_STATUS), (workflow_id,))[0]
        if status and status[0][0] == WorkflowStatusString.CANCELLED:
            return Unrecorded.CANCELLED
        return Unrecorded.CONFLICT


@cache
def _render(sql_text: str, prefix: str, placeholder: str) -> str:
    return sql.render(sql_text, prefix=prefix, placeholder=placeholder)


def workflow_params(row: WorkflowRow) -> tuple[Any, ...]:
    """``row`` as statement parameters, in `WORKFLOW_COLUMNS` order."""
    return tuple(getattr(row, name) for name in WorkflowRow.__dataclass_fields__)


def step_params(step: StepRow) -> tuple[Any, ...]:
    """``step`` as statement parameters, in `STEP_COLUMNS` order."""
    return tuple(getattr(step, name) for name in StepRow.__dataclass_fields__)


def _plain(values: tuple[Any, ...]) -> list[Any]:
    return [bytes(v) if isinstance(v, memoryview) else v for v in values]


def workflow_row(values: tuple[Any, ...]) -> WorkflowRow:
    """A `WorkflowRow` from a row selected in `WORKFLOW_COLUMNS` order."""
    return WorkflowRow(*_plain(values))


def step_row(values: tuple[Any, ...]) -> StepRow:
    """A `StepRow` from a row selected in `STEP_COLUMNS` order."""
    return StepRow(*_plain(values))
