"""What management calls return: `StepInfo`, `QueueInfo`, and decoding of stored rows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypedDict

from perdure.error import DBOSSerializationError
from perdure.execution.handles import WorkflowStatus, decode_status
from perdure.logs import get_logger
from perdure.queues.queue import QueueSpec
from perdure.serialization import Payloads
from perdure.storage.records import StepRow, WorkflowRow

logger = get_logger(__name__)


class StepInfo(TypedDict):
    """One recorded operation of a workflow (a step, transaction, sleep or child start).

    A plain dict, as in DBOS (``step["function_name"]``).

    Keys:
        function_id: Its position in the workflow (1, 2, 3, ...).
        function_name: The step's name, e.g. ``"charge_card"`` or ``"DBOS.sleep"``.
        output: Its decoded output (None for an error or a child workflow).
        error: The exception it ended with, or None.
        child_workflow_id: The ID of the child workflow it started, if any.
        started_at_epoch_ms: When it started (epoch milliseconds).
        completed_at_epoch_ms: When its outcome was recorded (epoch milliseconds).
    """

    function_id: int
    function_name: str
    output: Any
    error: BaseException | None
    child_workflow_id: str | None
    started_at_epoch_ms: int | None
    completed_at_epoch_ms: int | None


@dataclass(frozen=True)
class QueueInfo:
    """A queue as operators see it: its load now and its stored definition.

    Attributes:
        name: The queue's name.
        enqueued: Workflows waiting on it (ENQUEUED).
        running: Workflows claimed from it and not finished (PENDING).
        definition: Its settings as the last process that defined it stored them; None for
            a queue no launched process defined (work enqueued by a client, say) and for
            Perdure's internal queue.
    """

    name: str
    enqueued: int
    running: int
    definition: QueueSpec | None


class Unreadable(str):
    """Stands in for a payload this process cannot decode (e.g. its class is not importable).

    Only the lenient decoding of the command line uses it; listings return the stored value
    and other API calls raise instead.
    """

    __slots__ = ()


class RowDecoder:
    """Decodes stored rows. A payload this process cannot decode (a class it cannot import, a
    pickle it may not read) raises `DBOSSerializationError`, except: with ``lenient`` (the
    command line) it becomes an `Unreadable` placeholder, and in a listing (``listing=True``)
    it is logged as a warning and left as stored, as DBOS Transact's listings do (its text
    when the stored bytes are UTF-8, else the bytes).
    """

    def __init__(self, payloads: Payloads, *, lenient: bool) -> None:
        self.payloads = payloads
        self.lenient = lenient

    def status(self, row: WorkflowRow, *, listing: bool = False) -> WorkflowStatus:
        """The `WorkflowStatus` of a stored row."""
        try:
            return decode_status(self.payloads, row)
        except DBOSSerializationError:
            if not (self.lenient or listing):
                raise
        unread = dataclasses.replace(row, inputs=None, output=None, error=None)
        bare = decode_status(self.payloads, unread)
        wid, fmt = row.workflow_id, row.serialization
        bare.input = self._value(row.inputs, fmt, "workflow inputs", wid, listing=listing)
        bare.output = self._value(row.output, fmt, "workflow output", wid, listing=listing)
        bare.error = self._error(row.error, fmt, wid, listing=listing)
        return bare

    def step(self, row: StepRow, *, listing: bool = False) -> StepInfo:
        """The `StepInfo` of a stored step row."""
        wid, fmt = row.workflow_id, row.serialization
        what = f"output of step {row.function_name!r}"
        return StepInfo(
            function_id=row.function_id,
            function_name=row.function_name,
            output=self._value(row.output, fmt, what, wid, listing=listing),
            error=self._error(row.error, fmt, wid, listing=listing),
            child_workflow_id=row.child_workflow_id,
            started_at_epoch_ms=row.started_at_epoch_ms,
            completed_at_epoch_ms=row.completed_at_epoch_ms,
        )

    def _value(
        self, data: bytes | None, fmt: str, what: str, workflow_id: str, *, listing: bool
    ) -> Any:
        if not data:
            return None
        try:
            return self.payloads.decode(data, fmt, what=what, workflow_id=workflow_id)
        except DBOSSerializationError as exc:
            return self._unreadable(exc, data, what, workflow_id, listing=listing)

    def _error(self, data: bytes | None, fmt: str, workflow_id: str, *, listing: bool) -> Any:
        if not data:
            return None
        try:
            return self.payloads.decode_error(data, fmt, workflow_id=workflow_id)
        except DBOSSerializationError as exc:
            if self.lenient:
                return exc
            return self._unreadable(exc, data, "recorded error", workflow_id, listing=listing)

    def _unreadable(
        self,
        exc: DBOSSerializationError,
        data: bytes,
        what: str,
        workflow_id: str,
        *,
        listing: bool,
    ) -> Any:
        if self.lenient:
            return Unreadable(f"<unreadable: {exc}>")
        if not listing:
            raise exc
        logger.warning(
            "Workflow %s: its %s cannot be decoded here (%s); listed as stored",
            workflow_id,
            what,
            exc,
        )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
