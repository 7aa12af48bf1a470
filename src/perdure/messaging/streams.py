"""Streams: a workflow appends values under a key; readers anywhere get them in order.

Inside a workflow (not in its steps), each value a read delivers is one operation of the
workflow (``DBOS.readStream``, or ``DBOS.readStreamOffset``): its position is taken before the
wait, and the value, the end of the stream or a timeout is recorded there, so a replay gets
what the first execution got however the stream has grown since. A timeout is not durable:
a recovered read waits its full ``timeout_seconds`` again. Reads from steps, from plain code
and from clients record nothing.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from perdure import clock
from perdure.clock import now_ms
from perdure.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSStreamNondeterminismError,
    DBOSStreamTimeoutError,
)
from perdure.execution.context import WorkflowContext, current_workflow_id
from perdure.execution.notifier import Notifier, channel
from perdure.execution.workflow import WorkflowEngine, refused_error
from perdure.messaging.positions import WorkflowOperations, cancel_channel
from perdure.serialization import Payloads, check_serialization_type
from perdure.storage.records import Payload, StepRow, StreamEntry, WorkflowStatusString
from perdure.storage.store import Store, WriteRefused

WRITE_STREAM = "DBOS.writeStream"
CLOSE_STREAM = "DBOS.closeStream"
READ_STREAM = "DBOS.readStream"
READ_STREAM_OFFSET = "DBOS.readStreamOffset"
# Values one round trip reads ahead: written values never change, so reading ahead is safe.
READ_AHEAD = 100
# A shorter polling interval would keep a reader re-reading the database without pause.
MIN_POLLING_INTERVAL_SEC = 0.001

_UNFINISHED = (WorkflowStatusString.PENDING, WorkflowStatusString.ENQUEUED)


class _Ended:
    """What a read returns at the end of the stream (closed, or its writer finished)."""


ENDED = _Ended()


@dataclass
class _Cursor:
    """Where one read call is in a stream, and the entries it read ahead."""

    workflow_id: str
    key: str
    offset: int
    name: str  # the operation each value is recorded as, inside a workflow
    batch: int
    poll: float | None
    timeout: float | None
    ctx: WorkflowContext | None
    ahead: deque[StreamEntry] = field(default_factory=deque)


@dataclass(frozen=True)
class _Turn:
    """The read of one value: its position (inside a workflow), start and deadline."""

    position: int | None
    started_ms: int
    deadline: float | None


@dataclass(frozen=True)
class _Replayed:
    """A value (or the end) recorded by an earlier execution: no wait."""

    value: Any


class Streams(WorkflowOperations):
    """`write_stream` / `close_stream` and the reads of SPEC §4 over one engine and store."""

    def __init__(
        self,
        store: Store,
        payloads: Payloads,
        notifier: Notifier,
        engine: WorkflowEngine | None = None,
    ) -> None:
        super().__init__(store, payloads, notifier, engine)
        # Executions (by id of their context) with a read waiting for its value.
        self._reading: set[int] = set()
        self._reading_lock = threading.Lock()

    # -- writing -------------------------------------------------------------------------------

    def write(
        self, key: str, value: Any, *, close: bool = False, serialization_type: object = None
    ) -> None:
        """Append ``value`` to the calling workflow's stream ``key`` (or close it)."""
        workflow_id = current_workflow_id()
        if workflow_id is None:
            raise DBOSException(
                f"DBOS.write_stream/close_stream({key!r}) must be called from within a workflow "
                "or one of its steps: a stream belongs to the workflow that writes it."
            )
        check_serialization_type(
            serialization_type, f"DBOS.write_stream({key!r}) in workflow {workflow_id!r}"
        )
        payload = (
            Payload(None, self.payloads.format)
            if close
            else self._encode(value, f"stream {key!r} value", workflow_id)
        )
        ctx = self._workflow()
        fence = ctx or self._in_step()
        step = None
        if ctx is not None:
            name = CLOSE_STREAM if close else WRITE_STREAM
            position, recorded = self._position(ctx, name)
            if recorded is not None:
                return
            step = self._step(ctx, position, name)
        try:
            self.store.write_stream(
                workflow_id, key, payload.data, payload.serialization, closed=close, step=step,
                owner_token=fence.owner_token if fence is not None else None,
                function_id=self._step_position(),
            )  # fmt: skip
        except WriteRefused as exc:
            assert fence is not None  # noqa: S101 - only a fenced write is refused
            raise refused_error(fence, exc.reason) from None
        self.notifier.signal(channel("stream", workflow_id, key))

    # -- reading -------------------------------------------------------------------------------

    def read(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[Any]:
        """Yield the values from ``offset`` on until the stream is closed or its writer ended.

        Raises:
            DBOSStreamTimeoutError: No next value within ``timeout_seconds`` (per value).
            DBOSNonExistentWorkflowError: No workflow ``workflow_id`` exists.
        """
        cursor = self._open(
            workflow_id, key, offset=offset, name=READ_STREAM, batch=READ_AHEAD,
            polling_interval_sec=polling_interval_sec, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        while True:
            value = self._next(cursor)
            if value is ENDED:
                return
            yield value

    async def read_async(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[Any]:
        """`read` waiting on the event loop."""
        cursor = self._open(
            workflow_id, key, offset=offset, name=READ_STREAM, batch=READ_AHEAD,
            polling_interval_sec=polling_interval_sec, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        while True:
            value = await self._next_async(cursor)
            if value is ENDED:
                return
            yield value

    def read_offset(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The value at ``offset``, waiting for it to be written.

        Raises:
            DBOSStreamTimeoutError: Not written within ``timeout_seconds``, or the stream
                ended before ``offset``.
        """
        cursor = self._open(
            workflow_id, key, offset=offset, name=READ_STREAM_OFFSET, batch=1,
            polling_interval_sec=polling_interval_sec, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        return _value_or_raise(self._next(cursor), cursor)

    async def read_offset_async(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """`read_offset` waiting on the event loop."""
        cursor = self._open(
            workflow_id, key, offset=offset, name=READ_STREAM_OFFSET, batch=1,
            polling_interval_sec=polling_interval_sec, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        return _value_or_raise(await self._next_async(cursor), cursor)

    def _open(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int,
        name: str,
        batch: int,
        polling_interval_sec: float | None,
        timeout_seconds: float | None,
    ) -> _Cursor:
        if offset < 0:
            raise ValueError(f"offset must be 0 or more (the first value is 0), got {offset}")
        if timeout_seconds is not None and not timeout_seconds >= 0:
            raise ValueError(f"timeout_seconds must be 0 or more, got {timeout_seconds}")
        if polling_interval_sec is not None and not (
            math.isfinite(polling_interval_sec) and polling_interval_sec >= MIN_POLLING_INTERVAL_SEC
        ):
            raise ValueError(
                f"polling_interval_sec must be a finite number of at least "
                f"{MIN_POLLING_INTERVAL_SEC} seconds, got {polling_interval_sec}"
            )
        ctx = self._workflow()
        if ctx is not None and ctx.recorded_by_0_1:
            ctx = None  # Perdure 0.1 did not record stream reads: its workflows replay so
        return _Cursor(
            workflow_id, key, offset, name, batch, polling_interval_sec, timeout_seconds, ctx,
        )  # fmt: skip

    def _next(self, cursor: _Cursor) -> Any:
        """The next value (or `ENDED`), recorded inside a workflow."""
        turn = self._begin(cursor)
        if isinstance(turn, _Replayed):
            return turn.value
        try:
            with self._waiting():
                found = self.notifier.wait_for(
                    _channels(cursor), partial(self._look, cursor), deadline=turn.deadline,
                    interrupted=_interrupt(cursor), poll_interval_sec=cursor.poll,
                )  # fmt: skip
            return self._settle(cursor, turn, found)
        finally:
            self._release(cursor, turn)

    async def _next_async(self, cursor: _Cursor) -> Any:
        """`_next` waiting on the event loop; positions are taken on the loop, in order."""
        turn = self._begin(cursor)
        if isinstance(turn, _Replayed):
            return turn.value
        try:
            with self._waiting():
                found = await self.notifier.wait_for_async(
                    _channels(cursor), partial(self._look, cursor), deadline=turn.deadline,
                    interrupted=_interrupt(cursor), poll_interval_sec=cursor.poll,
                )  # fmt: skip
            return self._settle(cursor, turn, found)
        finally:
            self._release(cursor, turn)

    def _begin(self, cursor: _Cursor) -> _Turn | _Replayed:
        """Start reading the next value: its recorded outcome on a replay, else its turn."""
        deadline = None if cursor.timeout is None else clock.monotonic() + cursor.timeout
        ctx = cursor.ctx
        if ctx is None:
            return _Turn(None, now_ms(), deadline)
        with self._reading_lock:
            if id(ctx) in self._reading:
                raise DBOSStreamNondeterminismError(ctx.workflow_id, cursor.key)
        position, recorded = self._position(ctx, cursor.name)
        if recorded is not None:
            value = self._outcome(ctx, recorded)
            if value is not ENDED:
                cursor.offset += 1  # the values a workflow reads are consecutive
            return _Replayed(value)
        with self._reading_lock:
            self._reading.add(id(ctx))
        return _Turn(position, now_ms(), deadline)

    def _release(self, cursor: _Cursor, turn: _Turn) -> None:
        if cursor.ctx is not None and turn.position is not None:
            with self._reading_lock:
                self._reading.discard(id(cursor.ctx))

    def _look(self, cursor: _Cursor) -> StreamEntry | None:
        """The entry at the cursor's offset (a closing one if none will come), else None."""
        if cursor.ahead:
            return cursor.ahead[0]
        entries = self.store.read_stream(
            cursor.workflow_id, cursor.key, cursor.offset, cursor.batch
        )
        if not entries:
            if not self._writer_finished(cursor.workflow_id):
                return None
            # A last look: values written just before the writer ended.
            entries = self.store.read_stream(
                cursor.workflow_id, cursor.key, cursor.offset, cursor.batch
            )
            if not entries:  # the writer ended without closing: as if it had
                return StreamEntry(cursor.offset, Payload(None, self.payloads.format), closed=True)
        for entry in entries:
            if entry.closed and cursor.ahead:
                # A close is believed only when read at its own offset: a rewind of the
                # writer may delete it meanwhile, and its rerun write there instead.
                break
            cursor.ahead.append(entry)
            if entry.closed:
                break  # what a workflow writes after closing a stream is not part of it
        return cursor.ahead[0]

    def _writer_finished(self, workflow_id: str) -> bool:
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return row.status not in _UNFINISHED

    def _settle(self, cursor: _Cursor, turn: _Turn, found: StreamEntry | None) -> Any:
        """What the wait found, recorded at the turn's position inside a workflow."""
        if found is None:
            error = DBOSStreamTimeoutError(cursor.workflow_id, cursor.key, cursor.timeout)
            if cursor.ctx is not None and turn.position is not None:
                step = self.engine.step_row(
                    cursor.ctx, turn.position, cursor.name, turn.started_ms, error=error
                )
                standing = self.engine.record_step(cursor.ctx, step)
                if standing is not None:  # an earlier owner's record stands instead
                    return self._outcome(cursor.ctx, standing)
            raise error
        if found.closed:
            value: Any = ENDED
            payload = None
        else:
            cursor.ahead.popleft()
            cursor.offset = found.offset + 1
            value = self._decode(found.value, f"stream {cursor.key!r} value", cursor.workflow_id)
            payload = found.value  # recorded as stored: no second encoding
        if cursor.ctx is None or turn.position is None:
            return value
        # The end is recorded as a step without output (a value's output is never NULL).
        step = self._step(
            cursor.ctx, turn.position, cursor.name, payload, started_ms=turn.started_ms
        )
        standing = self.engine.record_step(cursor.ctx, step)
        return value if standing is None else self._outcome(cursor.ctx, standing)

    def _outcome(self, ctx: WorkflowContext, step: StepRow) -> Any:
        """A recorded read: its value, `ENDED`, or its recorded timeout raised."""
        if step.output is None and step.error is None:
            return ENDED
        return self.engine.replay_value(ctx, step)


def _value_or_raise(value: Any, cursor: _Cursor) -> Any:
    if value is ENDED:
        raise DBOSStreamTimeoutError(cursor.workflow_id, cursor.key)
    return value


def _channels(cursor: _Cursor) -> tuple[str, ...]:
    names = (channel("stream", cursor.workflow_id, cursor.key), channel("end", cursor.workflow_id))
    return names if cursor.ctx is None else (*names, cancel_channel(cursor.ctx))


def _interrupt(cursor: _Cursor) -> Callable[[], None] | None:
    """What stops the wait if the reading workflow is cancelled."""
    return cursor.ctx.check_live if cursor.ctx is not None else None
