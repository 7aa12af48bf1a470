"""Recorded workflow histories: read from a system database, or from the file `export` writes.

A history is what a replay needs of one workflow: its status row (function, inputs, status),
its recorded operations by position, and the rows of the children it started (a direct call
of a child workflow awaits the child's outcome, which is recorded in the child's row).

The export file is JSON, versioned so that a file written today stays readable::

    {
      "format": "perdure.workflow-export",
      "version": 1,
      "exported_at_epoch_ms": 1767225600000,
      "workflows": [
        {
          "status": {"workflow_id": "...", "status": "SUCCESS", "name": "...", ...},
          "operations": [{"function_id": 1, "function_name": "...", ...}, ...],
          "children": {"<child workflow ID>": {"workflow_id": "...", "status": ...}}
        }
      ]
    }

``status`` and each child hold the columns of ``workflow_status`` (`WorkflowRow`), each
operation those of ``operation_outputs`` (`StepRow`, without its workflow ID and owner
token). Stored payloads (``inputs``, ``output``, ``error``) are kept byte for byte, as
base64 text, with the ``serialization`` format they were written in: a file replays exactly
what the database held, whatever the serializer or payload codec. Readers of version 1
ignore keys they do not know, so later Perdure versions may add columns without a new
version number; a change that old readers would misread gets a new version.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from perdure.clock import now_ms
from perdure.error import DBOSException
from perdure.management.filters import TimeBound, epoch_ms, workflow_query
from perdure.storage.records import StepRow, WorkflowRow
from perdure.storage.store import Store

EXPORT_FORMAT = "perdure.workflow-export"
EXPORT_VERSION = 1
# Columns that hold stored payloads (bytes): base64 text in the file.
_PAYLOAD_COLUMNS = frozenset({"inputs", "output", "error"})
# Columns an operation's entry leaves out: its workflow is the entry's, its token is internal.
_OPERATION_OMITTED = frozenset({"workflow_id", "owner_token"})

Row = TypeVar("Row", WorkflowRow, StepRow)


@dataclass(frozen=True)
class RecordedWorkflow:
    """One workflow as recorded: what a replay re-executes and checks against.

    Attributes:
        row: Its status row (function name, inputs, status, application version).
        operations: Its recorded operations (steps, transactions, sleeps, messages, child
            starts, patch markers), in position order.
        children: The rows of the child workflows its operations started, by ID (those
            still recorded): a direct call of a child returns the child's recorded outcome.
    """

    row: WorkflowRow
    operations: tuple[StepRow, ...]
    children: Mapping[str, WorkflowRow] = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        """The workflow's ID."""
        return self.row.workflow_id


@dataclass(frozen=True)
class Selection:
    """Which recorded workflows to read; None means "any", all given filters must hold.

    Attributes:
        workflow_ids: Only these workflows.
        names: Only workflows of these function names.
        statuses: Only these statuses (``"DELAYED"`` included, as listings take it).
        since: Only workflows created at or after this time (ISO 8601, datetime, epoch ms).
        limit: At most this many, the newest first.
    """

    workflow_ids: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    since: TimeBound = None
    limit: int | None = None

    def matches(self, row: WorkflowRow) -> bool:
        """Whether ``row`` passes the filters other than ``limit`` (for histories in hand)."""
        since_ms = epoch_ms(self.since, what="since")
        return (
            (self.workflow_ids is None or row.workflow_id in self.workflow_ids)
            and (self.names is None or row.name in self.names)
            and (self.statuses is None or _status_of(row) in {s.upper() for s in self.statuses})
            and (since_ms is None or row.created_at >= since_ms)
        )


def _status_of(row: WorkflowRow) -> str:
    """The status a listing shows: DELAYED for an enqueued workflow whose delay has not passed."""
    delayed = row.not_before_epoch_ms is not None and row.not_before_epoch_ms > now_ms()
    return "DELAYED" if row.status == "ENQUEUED" and delayed else str(row.status)


def load_histories(store: Store, selection: Selection | None = None) -> list[RecordedWorkflow]:
    """The histories ``selection`` picks from ``store``, the newest first (reads only).

    Raises:
        ValueError: A malformed filter (an unknown status, a time that is not ISO 8601).
    """
    selection = selection or Selection()
    query = workflow_query(
        workflow_ids=selection.workflow_ids,
        status=selection.statuses,
        name=selection.names,
        start_time=selection.since,
        limit=selection.limit,
        sort_desc=True,
    )
    return [load_history(store, row) for row in store.list_workflows(query)]


def load_history(store: Store, row: WorkflowRow) -> RecordedWorkflow:
    """The history of the workflow of ``row``: its operations and its children's rows."""
    operations = tuple(sorted(store.load_steps(row.workflow_id), key=lambda s: s.function_id))
    children: dict[str, WorkflowRow] = {}
    for step in operations:
        child_id = step.child_workflow_id
        if child_id is None or child_id in children:
            continue
        child = store.get_workflow(child_id)
        if child is not None:  # deleted since, perhaps: a replay that needs it says so
            children[child_id] = replace(child, inputs=None)
    return RecordedWorkflow(row, operations, children)


# -- the export file ------------------------------------------------------------------------------


def export_document(histories: Iterable[RecordedWorkflow]) -> dict[str, Any]:
    """The export file's content (a JSON object) for ``histories``."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at_epoch_ms": now_ms(),
        "workflows": [_history_entry(h) for h in histories],
    }


def write_export(path: Path, histories: Iterable[RecordedWorkflow]) -> int:
    """Write ``histories`` to ``path`` as an export file; returns how many it holds."""
    document = export_document(histories)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return len(document["workflows"])


def read_export(path: Path) -> list[RecordedWorkflow]:
    """The histories of an export file.

    Raises:
        DBOSException: Not an export file, a version this Perdure cannot read, or a
            malformed entry (the message names it).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DBOSException(f"Cannot read workflow export {str(path)!r}: {exc}") from exc
    return parse_export(document, source=str(path))


def parse_export(document: object, *, source: str = "export") -> list[RecordedWorkflow]:
    """The histories of an export file's content (see `read_export`)."""
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise DBOSException(
            f"{source!r} is not a Perdure workflow export: write one with "
            "`perdure workflow export`."
        )
    version = document.get("version")
    if version != EXPORT_VERSION:
        raise DBOSException(
            f"{source!r} is a workflow export of version {version!r}; this Perdure reads "
            f"version {EXPORT_VERSION}. Read it with the Perdure version that wrote it, or "
            "export again."
        )
    entries = document.get("workflows")
    if not isinstance(entries, list):
        raise DBOSException(f"{source!r}: 'workflows' must be a list.")
    return [_history_of(entry, f"{source} workflows[{i}]") for i, entry in enumerate(entries)]


def _history_entry(history: RecordedWorkflow) -> dict[str, Any]:
    return {
        "status": _columns(history.row, omitted=frozenset({"owner_token"})),
        "operations": [_columns(s, omitted=_OPERATION_OMITTED) for s in history.operations],
        "children": {
            child_id: _columns(child, omitted=frozenset({"owner_token"}))
            for child_id, child in sorted(history.children.items())
        },
    }


def _columns(row: WorkflowRow | StepRow, *, omitted: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in fields(row):
        if column.name in omitted:
            continue
        value = getattr(row, column.name)
        if column.name in _PAYLOAD_COLUMNS and value is not None:
            value = base64.b64encode(value).decode("ascii")
        out[column.name] = value
    return out


def _history_of(entry: object, where: str) -> RecordedWorkflow:
    if not isinstance(entry, dict):
        raise DBOSException(f"{where}: an entry must be an object with 'status' and 'operations'.")
    row = _row_of(WorkflowRow, entry.get("status"), f"{where}.status", {})
    operations = entry.get("operations", [])
    children = entry.get("children", {})
    if not isinstance(operations, list) or not isinstance(children, dict):
        raise DBOSException(f"{where}: 'operations' must be a list and 'children' an object.")
    steps = tuple(
        _row_of(StepRow, op, f"{where}.operations[{i}]", {"workflow_id": row.workflow_id})
        for i, op in enumerate(operations)
    )
    kids = {
        str(child_id): _row_of(WorkflowRow, child, f"{where}.children[{child_id!r}]", {})
        for child_id, child in children.items()
    }
    return RecordedWorkflow(row, tuple(sorted(steps, key=lambda s: s.function_id)), kids)


def _row_of(kind: type[Row], data: object, where: str, given: dict[str, Any]) -> Row:
    """A `WorkflowRow` or `StepRow` from its columns: unknown keys are ignored (later
    versions may add some), missing optional ones take their defaults."""
    if not isinstance(data, dict):
        raise DBOSException(f"{where}: expected an object of columns, got {data!r}.")
    values: dict[str, Any] = dict(given)
    for column in fields(kind):
        if column.name not in data or column.name in given:
            continue
        value = data[column.name]
        if column.name in _PAYLOAD_COLUMNS and value is not None:
            try:
                value = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DBOSException(f"{where}.{column.name}: not base64 text ({exc}).") from exc
        values[column.name] = value
    try:
        return kind(**values)
    except TypeError as exc:  # a required column is missing
        raise DBOSException(f"{where}: {exc}; the entry lacks a required column.") from exc
