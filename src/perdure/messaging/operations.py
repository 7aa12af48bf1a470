"""Messages, events and streams: durable inside workflows, idempotent or plain outside them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any, cast

from perdure.clock import now_ms
from perdure.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.context import (
    WorkflowContext,
    current_workflow,
    current_workflow_id,
    take_next_options,
)
from perdure.execution.notifier import Notifier, channel
from perdure.execution.steps import wake_time
from perdure.execution.workflow import WorkflowEngine, rejected_step_error
from perdure.serialization import Payloads
from perdure.storage.interface import (
    MessagingStore,
    Payload,
    StepRejected,
    StepRow,
    Unrecorded,
    WorkflowStatusString,
)

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
        store: MessagingStore,
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
        return cls(cast(MessagingStore, engine.store), engine.payloads, engine.notifier, engine)

    def _workflow(self) -> WorkflowContext | None:
        """The workflow calling, if this process runs workflows (a client never does)."""
        return current_workflow() if self._engine is not None else None

    # -- shared mechanics ----------------------------------------------------------------------

    def _position(self, ctx: WorkflowContext, name: str) -> tuple[int, StepRow | None]:
        """Take the next position; the recorded step there if this is a replay."""
        position = ctx.take_position()
        ctx.check_live()
        return position, self.engine.replayed_step(ctx, position, name)

    def _step(
        self, ctx: WorkflowContext, position: int, name: str, payload: Payload | None = None
    ) -> StepRow:
        now = now_ms()
        return StepRow(
            workflow_id=ctx.workflow_id,
            function_id=position,
            function_name=name,
            output=payload.data if payload else None,
            error=None,
            child_workflow_id=None,
            serialization=payload.serialization if payload else self.payloads.format,
            started_at_epoch_ms=now,
            completed_at_epoch_ms=now,
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
            )
        except StepRejected as exc:
            assert ctx is not None  # noqa: S101 - only raised with a step
            raise rejected_step_error(ctx, exc) from None
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
            return self.engine.replay_value(ctx, recorded)
        handed_off = channel("recv", ctx.workflow_id, str(position))

        def receive() -> Payload | None:
            handed = self.notifier.take(handed_off)  # a sender here or a notification left it
            if handed is not None:
                return cast(Payload, handed)
            return self.store.receive_message(
                ctx.workflow_id, topic, self._step(ctx, position, RECV)
            )

        try:
            payload = self.notifier.wait_for(
                (channel("msg", ctx.workflow_id, topic or ""), handed_off),
                receive,
                deadline=deadline,
                interrupted=ctx.check_live,
            )
            if payload is None:
                payload = self._time_out(ctx, topic, position)
        except StepRejected as exc:
            if exc.reason != Unrecorded.CONFLICT:
                raise rejected_step_error(ctx, exc) from None
            # The position was taken meanwhile: by a sender handing off, or another execution.
            payload = self._recorded_message(ctx, position)
            if payload is None:
                raise rejected_step_error(ctx, exc) from None
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
        self.engine.record_step(ctx, self._step(ctx, position, RECV))
        return None

    def _recorded_message(self, ctx: WorkflowContext, position: int) -> Payload | None:
        recorded = self.engine.store.get_step(ctx.workflow_id, position)
        if recorded is None or recorded.function_name != RECV:
            return None
        return Payload(recorded.output, recorded.serialization)

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
        step = None
        if ctx is not None:
            position, recorded = self._position(ctx, SET_EVENT)
            if recorded is not None:
                return
            step = self._step(ctx, position, SET_EVENT)
        try:
            self.store.set_event(
                workflow_id, key, payload.data or b"", payload.serialization, step=step
            )
        except StepRejected as exc:
            assert ctx is not None  # noqa: S101 - only raised with a step
            raise rejected_step_error(ctx, exc) from None
        self.notifier.signal(channel("event", workflow_id, key))

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float) -> Any:
        """The value of ``key`` set by ``workflow_id``, waiting up to the timeout; else None."""
        ctx = self._workflow()

        def lookup() -> Payload | None:
            return self.store.get_event(workflow_id, key)

        names = (channel("event", workflow_id, key),)
        if ctx is None:
            payload = self.notifier.wait_for(
                names, lookup, deadline=time.monotonic() + timeout_seconds
            )
            return self._decode(payload, f"event {key!r}", workflow_id)
        deadline = self._durable_deadline(ctx, timeout_seconds)
        position, recorded = self._position(ctx, GET_EVENT)
        if recorded is not None:
            return self.engine.replay_value(ctx, recorded)
        payload = self.notifier.wait_for(
            names, lookup, deadline=deadline, interrupted=ctx.check_live
        )
        self.engine.record_step(ctx, self._step(ctx, position, GET_EVENT, payload))
        return self._decode(payload, f"event {key!r}", workflow_id)

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event ``workflow_id`` has set, by key."""
        return {
            key: self._decode(payload, f"event {key!r}", workflow_id)
            for key, payload in self.store.get_all_events(workflow_id).items()
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
        step = None
        if ctx is not None:
            name = CLOSE_STREAM if close else WRITE_STREAM
            position, recorded = self._position(ctx, name)
            if recorded is not None:
                return
            step = self._step(ctx, position, name)
        try:
            self.store.write_stream(
                workflow_id, key, payload.data, payload.serialization, closed=close, step=step
            )
        except StepRejected as exc:
            assert ctx is not None  # noqa: S101 - only raised with a step
            raise rejected_step_error(ctx, exc) from None
        self.notifier.signal(channel("stream", workflow_id, key))

    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield the stream's values in order until it is closed or its writer has ended."""
        offset = 0
        names = (channel("stream", workflow_id, key), channel("end", workflow_id))
        while True:
            entries = self.store.read_stream(workflow_id, key, offset)
            for entry in entries:
                if entry.closed:
                    return
                yield self._decode(entry.value, f"stream {key!r} value", workflow_id)
                offset = entry.offset + 1
            if entries:
                continue
            if self._writer_finished(workflow_id):
                # A last look: values written just before the writer ended.
                if not self.store.read_stream(workflow_id, key, offset):
                    return
                continue
            self.notifier.wait_for(
                names, partial(self._stream_moved, workflow_id, key, offset), deadline=None
            )

    def _writer_finished(self, workflow_id: str) -> bool:
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return row.status not in _UNFINISHED

    def _stream_moved(self, workflow_id: str, key: str, offset: int) -> bool | None:
        if self.store.read_stream(workflow_id, key, offset) or self._writer_finished(workflow_id):
            return True
        return None


async def in_thread(values: Iterator[Any]) -> AsyncIterator[Any]:
    """Iterate a blocking iterator (e.g. `Messaging.read_stream`) without blocking the loop."""
    done = object()
    while True:
        value = await asyncio.to_thread(next, values, done)
        if value is done:
            return
        yield value
