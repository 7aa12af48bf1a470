"""Records to statement parameters and back, in the column order of `perdure.storage.records`."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from perdure.storage.records import STEP_COLUMNS, WORKFLOW_COLUMNS, StepRow, WorkflowRow

WF_COLS = ", ".join(WORKFLOW_COLUMNS)
WF_MARKS = ", ".join("?" for _ in WORKFLOW_COLUMNS)
STEP_COLS = ", ".join(STEP_COLUMNS)
STEP_MARKS = ", ".join("?" for _ in STEP_COLUMNS)


def marks(count: int) -> str:
    """``count`` comma-separated ``?`` placeholders."""
    return ", ".join("?" for _ in range(count))


# One C call per row (a per-column generator cost ~1 us per column on every checkpoint).
_workflow_values = attrgetter(*WORKFLOW_COLUMNS)
_step_values = attrgetter(*STEP_COLUMNS)


def workflow_params(row: WorkflowRow) -> tuple[Any, ...]:
    """``row`` as statement parameters, in `WORKFLOW_COLUMNS` order."""
    values: tuple[Any, ...] = _workflow_values(row)
    return values


def step_params(step: StepRow) -> tuple[Any, ...]:
    """``step`` as statement parameters, in `STEP_COLUMNS` order."""
    values: tuple[Any, ...] = _step_values(step)
    return values


def _plain(values: tuple[Any, ...]) -> list[Any]:
    return [bytes(v) if isinstance(v, memoryview) else v for v in values]


def workflow_row(values: tuple[Any, ...]) -> WorkflowRow:
    """A `WorkflowRow` from a row selected in `WORKFLOW_COLUMNS` order."""
    row = WorkflowRow(*_plain(values))
    row.was_forked_from = bool(row.was_forked_from)  # SQLite stores 0 / 1
    return row


def step_row(values: tuple[Any, ...]) -> StepRow:
    """A `StepRow` from a row selected in `STEP_COLUMNS` order."""
    return StepRow(*_plain(values))


def blob(value: Any) -> bytes | None:
    """A BYTEA / BLOB value as bytes (psycopg may give a memoryview)."""
    return bytes(value) if value is not None else None
