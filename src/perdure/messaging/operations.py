"""Messages, events and streams: durable inside workflows, idempotent or plain outside them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from perdure.clock import now_ms
from perdure.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.context import (
    WorkflowContext,
    current_workflow,
    current_workflow_id,
    enclosing_workflow,
    take_next_options,
)
from perdure.execution.notifier import Notifier, channel
from perdure.execution.steps import wake_time
from perdure.execution.workflow import WorkflowEngine, refused_error
from perdure.serialization import Payloads
from perdure.storage.records import HandedMessage, Payload, StepRow, WorkflowStatusString
from perdure.storage.store import Store, WriteRefused

SEND = "DBOS.send"
RECV = "DBOS.recv"
SET_EVENT = "DBOS.setEvent"
GET_EVENT = "DBOS.getEvent"
WRITE_STREAM = "DBOS.writeStream"
CLOSE_STREAM = "DBOS.closeStream"

_UNFINISHED = (WorkflowStatusString.PENDING, WorkflowStatusString.ENQUEUED)


class Messaging:
    """The operations of SPEC §4 over one engine (for checkpoints) and its store."""

    def __init__(
        self,
        store: Store,
        payloads: Payloads,
        notifier: Notifier,
        engine: WorkflowEngine | None = None,
    ) -> None:
        """Without an engine (a client), only the calls made outside workflows are possible."""
        self.store = store
        self.payloads = payloads
        self.notifier = notifier
        self._engine = engine

    @property
    def engine(self) -> WorkflowEngine:
        assert self._engine is not None  # noqa: S101 - only used inside workflows
        return self._engine

    @classmethod
    def of(cls, engine: WorkflowEngine) -> Messaging:
        """Messaging over a launched engine (the store it uses and its checkpoints)."""
        return cls(engine.store, engine.payloads, engine.notifier, engine)

    def _workflow(self) -> WorkflowContext | None:
        """The workflow calling, if this process runs workflows (a client never does)."""
        return current_workflow() if self._engine is not None else None

    def _in_step(self) -> WorkflowContext | None:
        """The workflow whose step is calling (its token fences the write), if any."""
        if self._engine is None or current_workflow() is not None:
            return None
        return enclosing_workflow()

    def _waiting(self) -> AbstractContextManager[None]:
        """Around a wait: no pool slot, no connection kept (a launched process only)."""
        return self._engine.waiting() if self._engine is not None else nullcontext()

    # -- shared mechanics ----------------------------------------------------------------------

    def _position(self, ctx: WorkflowContext, name: str) -> tuple[int, StepRow | None]:
        """Take the next position; the recorded step there if this is a replay."""
        position = ctx.take_position()
        ctx.check_live()
        return position, self.engine.replayed_step(ctx, position, name)

    def _step(
        self, ctx: WorkflowContext, position: int, name: str, payload: Payload | None = None
    ) -> StepRow:
        return self.engine.encoded_step(
            ctx,
            position,
            name,
            now_ms(),
            output=payload.data if payload else None,
            serialization=payload.serialization if payload else None,
        )

    def _decode(self, payload: Payload | None, what: str, workflow_id: str) -> Any:
        if payload is None or payload.data is None:
            return None
        return self.payloads.decode(
            payload.data, payload.serialization, what=what, workflow_id=workflow_id
        )

    def _encode(self, value: Any, what: str, workflow_id: str) -> Payload:
        data = self.payloads.encode(value, what=what, workflow_id=workflow_id)
        return Payload(data, self.payloads.format)

    def _durable_deadline(self, ctx: WorkflowContext, timeout_seconds: float) -> float:
        """A wait's deadline, checkpointed so a recovered wait only waits the remainder."""
        wake_ms = wake_time(self.engine, ctx, timeout_seconds)
        return time.monotonic() + max(0.0, (wake_ms - now_ms()) / 1000)

    # -- messages ------------------------------------------------------------------------------

    def send(
        self, destination_id: str, message: Any, topic: str | None, idempotency_key: str | None
    ) -> None:
        """Queue ``message`` for ``destination_id``; exactly once from a workflow."""
        ctx = self._workflow()
        fence = ctx or self._in_step()
        what = f"message to workflow {destination_id!r}"
        payload = self._encode(message, what, current_workflow_id() or destination_id)
        step = None
        if ctx is not None:
            position, recorded = self._position(ctx, SEND)
            if recorded is not None:
                self.engine.replay_value(ctx, recorded)
                return
            message_id = f"{ctx.workflow_id}-{position}"
            step = self._step(ctx, position, SEND)
        elif idempotency_key is not None:
            message_id = f"{destination_id}|{idempotency_key}"
        else:
            given = take_next_options().workflow_id if current_workflow_id() is None else None
            message_id = f"{destination_id}|{given}" if given else str(uuid.uuid4())
        try:
            delivery = self.store.send_message(
                message_id=message_id,
                destination_id=destination_id,
                topic=topic,
                message=payload.data or b"",
                serialization=payload.serialization,
                recv_step_name=RECV,
                step=step,
                owner_token=fence.owner_token if fence is not None else None,
                sender_id=fence.workflow_id if fence is not None else None,
            )
        except WriteRefused as exc:
            assert fence is not None  # noqa: S101 - only a fenced write is refused
            raise refused_error(fence, exc.reason) from None
        if delivery.outcome == "no_destination":
            raise DBOSNonExistentWorkflowError(
                destination_id,
                f"Cannot send a message to workflow {destination_id!r}: no workflow has that "
                "ID. Check the destination ID (start the workflow before sending to it).",
            )
        if delivery.handed_to is None:
            self.notifier.signal(channel("msg", destination_id, topic or ""))
        else:  # a receiver here returns with the message, without reading it back
            handed = Payload(payload.data or b"", payload.serialization)
            self.notifier.signal(channel("recv", destination_id, str(delivery.handed_to)), handed)

    def recv(self, topic: str | None, timeout_seconds: float) -> Any:
        """The oldest message on ``topic`` for the calling workflow, or None on timeout."""
        wait = self._recv_wait(topic, timeout_seconds)
        if isinstance(wait, _Recorded):
            return wait.value
        try:
            with self._waiting():
                payload = self.notifier.wait_for(
                    wait.names, wait.check, deadline=wait.deadline, interrupted=wait.interrupted
                )
        except WriteRefused as exc:
            raise refused_error(wait.workflow, exc.reason) from None
        return self._recv_done(wait, topic, payload)

    async def recv_async(self, topic: str | None, timeout_seconds: float) -> Any:
        """`recv` waiting on the event loop; its positions are taken on the loop."""
        wait = self._recv_wait(topic, timeout_seconds)
        if isinstance(wait, _Recorded):
            return wait.value
        try:
            with self._waiting():
                payload = await self.notifier.wait_for_async(
                    wait.names, wait.check, deadline=wait.deadline, interrupted=wait.interrupted
                )
        except WriteRefused as exc:
            raise refused_error(wait.workflow, exc.reason) from None
        return self._recv_done(wait, topic, payload)

    def _recv_wait(self, topic: str | None, timeout_seconds: float) -> _Wait | _Recorded:
        """Take recv's positions (its durable deadline, then itself): what to wait for."""
        ctx = self._workflow()
        if ctx is None:
            raise DBOSException(
                "DBOS.recv() can only be called from inside a workflow (not from a step or "
                "plain code): messages are addressed to a workflow ID. Send to a workflow and "
                "receive in its body."
            )
        deadline = self._durable_deadline(ctx, timeout_seconds)
        position, recorded = self._position(ctx, RECV)
        if recorded is not None:
            return _Recorded(self.engine.replay_value(ctx, recorded))
        handed_off = channel("recv", ctx.workflow_id, str(position))

        def receive() -> Payload | None:
            step = self._step(ctx, position, RECV)
            handed = self.notifier.take(handed_off)
            if isinstance(handed, Payload):  # a sender in this process handed it over
                return handed
            if isinstance(handed, HandedMessage) and handed.owner_token == step.owner_token:
                return handed.payload  # signed by the database, for this execution
            return self.store.receive_message(ctx.workflow_id, topic, step)

        names = (channel("msg", ctx.workflow_id, topic or ""), handed_off, _cancel(ctx))
        return _Wait(ctx, position, names, receive, deadline)

    def _recv_done(self, wait: _Wait, topic: str | None, payload: Payload | None) -> Any:
        ctx = wait.workflow
        try:
            if payload is None:
                payload = self._time_out(ctx, topic, wait.position)
        except WriteRefused as exc:
            raise refused_error(ctx, exc.reason) from None
        return self._decode(payload, "received message", ctx.workflow_id)

    def _time_out(self, ctx: WorkflowContext, topic: str | None, position: int) -> Payload | None:
        """Record that ``recv`` timed out, unless a sender handed it a message first."""
        # Once the registration is withdrawn no hand-off to this position can start, and one
        # in flight has committed (withdrawing waits for it). Whether or not the row was still
        # there (a check racing a hand-off may have registered again), the step tells.
        self.store.stop_waiting(ctx.workflow_id, topic, position)
        handed = self._recorded_message(ctx, position)
        if handed is not None:
            return handed
        standing = self.engine.record_step(ctx, self._step(ctx, position, RECV))
        return Payload(standing.output, standing.serialization) if standing else None

    def _recorded_message(self, ctx: WorkflowContext, position: int) -> Payload | None:
        found = self.store.load_steps(ctx.workflow_id, position=position)
        if not found or found[0].function_name != RECV:
            return None
        return Payload(found[0].output, found[0].serialization)

    # -- events --------------------------------------------------------------------------------

    def set_event(self, key: str, value: Any) -> None:
        """Publish ``value`` under ``key`` for the calling workflow (replacing an older one)."""
        workflow_id = current_workflow_id()
        if workflow_id is None:
            raise DBOSException(
                f"DBOS.set_event({key!r}, ...) must be called from a workflow or one of its "
                "steps: events belong to the workflow that sets them."
            )
        payload = self._encode(value, f"event {key!r}", workflow_id)
        ctx = self._workflow()
        fence = ctx or self._in_step()
        step = None
        if ctx is not None:
            position, recorded = self._position(ctx, SET_EVENT)
            if recorded is not None:
                return
            step = self._step(ctx, position, SET_EVENT)
        try:
            self.store.set_event(
                workflow_id, key, payload.data or b"", payload.serialization, step=step,
                owner_token=fence.owner_token if fence is not None else None,
            )  # fmt: skip
        except WriteRefused as exc:
            assert fence is not None  # noqa: S101 - only a fenced write is refused
            raise refused_error(fence, exc.reason) from None
        self.notifier.signal(channel("event", workflow_id, key))

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float) -> Any:
        """The value of ``key`` set by ``workflow_id``, waiting up to the timeout; else None."""
        wait = self._event_wait(workflow_id, key, timeout_seconds)
        if isinstance(wait, _Recorded):
            return wait.value
        with self._waiting():
            payload = self.notifier.wait_for(
                wait.names, wait.check, deadline=wait.deadline, interrupted=wait.interrupted
            )
        return self._event_done(wait, workflow_id, key, payload)

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float) -> Any:
        """`get_event` waiting on the event loop; its positions are taken on the loop."""
        wait = self._event_wait(workflow_id, key, timeout_seconds)
        if isinstance(wait, _Recorded):
            return wait.value
        with self._waiting():
            payload = await self.notifier.wait_for_async(
                wait.names, wait.check, deadline=wait.deadline, interrupted=wait.interrupted
            )
        return self._event_done(wait, workflow_id, key, payload)

    def _event_wait(self, workflow_id: str, key: str, timeout_seconds: float) -> _Wait | _Recorded:
        """Inside a workflow, take get_event's positions (its durable deadline, then itself)."""
        ctx = self._workflow()

        def lookup() -> Payload | None:
            return self.store.get_events(workflow_id, key).get(key)

        names = (channel("event", workflow_id, key),)
        if ctx is None:
            return _Wait(None, 0, names, lookup, time.monotonic() + timeout_seconds)
        deadline = self._durable_deadline(ctx, timeout_seconds)
        position, recorded = self._position(ctx, GET_EVENT)
        if recorded is not None:
            return _Recorded(self.engine.replay_value(ctx, recorded))
        return _Wait(ctx, position, (*names, _cancel(ctx)), lookup, deadline)

    def _event_done(self, wait: _Wait, workflow_id: str, key: str, payload: Payload | None) -> Any:
        if wait.ctx is not None:
            step = self._step(wait.ctx, wait.position, GET_EVENT, payload)
            standing = self.engine.record_step(wait.ctx, step)
            if standing is not None:
                return self.engine.replay_value(wait.ctx, standing)
        return self._decode(payload, f"event {key!r}", workflow_id)

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event ``workflow_id`` has set, by key."""
        return {
            key: self._decode(payload, f"event {key!r}", workflow_id)
            for key, payload in self.store.get_events(workflow_id).items()
        }

    # -- streams -------------------------------------------------------------------------------

    def write_stream(self, key: str, value: Any, *, close: bool = False) -> None:
        """Append ``value`` to the calling workflow's stream ``key`` (or close it)."""
        workflow_id = current_workflow_id()
        if workflow_id is None:
            raise DBOSException(
                f"DBOS.write_stream/close_stream({key!r}) must be called from a workflow or one "
                "of its steps: a stream belongs to the workflow that writes it."
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
            )  # fmt: skip
        except WriteRefused as exc:
            assert fence is not None  # noqa: S101 - only a fenced write is refused
            raise refused_error(fence, exc.reason) from None
        self.notifier.signal(channel("stream", workflow_id, key))

    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield the stream's values in order until it is closed or its writer has ended."""
        offset = 0
        while True:
            entries, offset, ended = self._stream_read(workflow_id, key, offset)
            yield from entries
            if ended:
                return
            if not entries:
                with self._waiting():
                    self.notifier.wait_for(
                        _stream_channels(workflow_id, key),
                        partial(self._stream_moved, workflow_id, key, offset),
                        deadline=None,
                    )

    async def read_stream_async(self, workflow_id: str, key: str) -> AsyncIterator[Any]:
        """`read_stream` waiting on the event loop."""
        offset = 0
        while True:
            entries, offset, ended = self._stream_read(workflow_id, key, offset)
            for value in entries:
                yield value
            if ended:
                return
            if not entries:
                with self._waiting():
                    await self.notifier.wait_for_async(
                        _stream_channels(workflow_id, key),
                        partial(self._stream_moved, workflow_id, key, offset),
                        deadline=None,
                    )

    def _stream_read(self, workflow_id: str, key: str, offset: int) -> tuple[list[Any], int, bool]:
        """The values from ``offset`` on, the next offset, and whether the stream ended."""
        values: list[Any] = []
        for entry in self.store.read_stream(workflow_id, key, offset):
            if entry.closed:
                return values, offset, True
            values.append(self._decode(entry.value, f"stream {key!r} value", workflow_id))
            offset = entry.offset + 1
        if values:
            return values, offset, False
        if self._writer_finished(workflow_id):
            # A last look: values written just before the writer ended.
            late = self.store.read_stream(workflow_id, key, offset)
            if not late:
                return values, offset, True
            return self._stream_read(workflow_id, key, offset)
        return values, offset, False

    def _writer_finished(self, workflow_id: str) -> bool:
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return row.status not in _UNFINISHED

    def _stream_moved(self, workflow_id: str, key: str, offset: int) -> bool | None:
        if self.store.read_stream(workflow_id, key, offset) or self._writer_finished(workflow_id):
            return True
        return None


@dataclass(frozen=True)
class _Wait:
    """A wait a messaging call is about to make: what wakes it, what it checks, until when."""

    ctx: WorkflowContext | None
    position: int
    names: tuple[str, ...]
    check: Callable[[], Payload | None]
    deadline: float

    @property
    def workflow(self) -> WorkflowContext:
        """The waiting workflow (a wait made inside one)."""
        assert self.ctx is not None  # noqa: S101 - only asked of waits inside workflows
        return self.ctx

    def interrupted(self) -> None:
        """Stop the wait if the waiting workflow was cancelled."""
        if self.ctx is not None:
            self.ctx.check_live()


@dataclass(frozen=True)
class _Recorded:
    """A replayed call: its recorded value, no wait."""

    value: Any


def _cancel(ctx: WorkflowContext) -> str:
    """The channel a cancellation of the waiting workflow (in this process) signals."""
    return channel("cancel", ctx.workflow_id)


def _stream_channels(workflow_id: str, key: str) -> tuple[str, ...]:
    return (channel("stream", workflow_id, key), channel("end", workflow_id))
