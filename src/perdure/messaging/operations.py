"""Messages and events: durable inside workflows, idempotent or plain outside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from perdure import clock
from perdure.error import DBOSException, DBOSNonExistentWorkflowError
from perdure.execution.context import (
    WorkflowContext,
    current_workflow_id,
    take_next_options,
)
from perdure.execution.notifier import Notifier, channel
from perdure.execution.workflow import WorkflowEngine, refused_error
from perdure.messaging.outgoing import (
    SendMessage,
    checked_messages,
    message_id,
    workflow_origin,
)
from perdure.messaging.positions import WorkflowOperations, cancel_channel
from perdure.messaging.streams import Streams
from perdure.serialization import Payloads, check_serialization_type
from perdure.storage.records import HandedMessage, OutgoingMessage, Payload
from perdure.storage.store import Store, WriteRefused

SEND = "DBOS.send"
SEND_BULK = "DBOS.send_bulk"
RECV = "DBOS.recv"
SET_EVENT = "DBOS.setEvent"
GET_EVENT = "DBOS.getEvent"


class Messaging(WorkflowOperations):
    """The operations of SPEC §4 over one engine (for checkpoints) and its store.

    Streams are `streams`; the rest is here.
    """

    def __init__(
        self,
        store: Store,
        payloads: Payloads,
        notifier: Notifier,
        engine: WorkflowEngine | None = None,
    ) -> None:
        """Without an engine (a client), only the calls made outside workflows are possible."""
        super().__init__(store, payloads, notifier, engine)
        self.streams = Streams(store, payloads, notifier, engine)

    # -- messages ------------------------------------------------------------------------------

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None,
        idempotency_key: str | None,
        *,
        serialization_type: object = None,
        to_forks: bool = False,
        hand_off: bool = True,
    ) -> None:
        """Queue ``message`` for ``destination_id`` (and its forks); once from a workflow.

        A receiver waiting now is handed the message directly, unless ``hand_off`` is False
        (a send inside a caller's transaction: a hand-off would hold the receiver's
        registration until that transaction ends); it then takes it from the queue.
        """
        check_serialization_type(serialization_type, f"DBOS.send to workflow {destination_id!r}")
        if to_forks or not hand_off:
            one = SendMessage(destination_id, message, topic, idempotency_key)
            self._send_all([one], SEND, to_forks=to_forks, indexed=False)
            return
        ctx = self._workflow()
        fence = ctx or self._in_step()
        what = f"message to workflow {destination_id!r}"
        payload = self._encode(message, what, current_workflow_id() or destination_id)
        step = origin = None
        if ctx is not None:
            position, recorded = self._position(ctx, SEND)
            if recorded is not None:
                self.engine.replay_value(ctx, recorded)
                return
            origin = workflow_origin(ctx.workflow_id, position, ctx.owner_token)
            step = self._step(ctx, position, SEND)
        elif idempotency_key is None:
            given = _given_workflow_id()
            origin = f"{destination_id}|{given}" if given else None
        try:
            delivery = self.store.send_message(
                message_id=message_id(destination_id, idempotency_key, origin=origin),
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
            raise _no_destination((destination_id,))
        if delivery.handed_to is None:
            self.notifier.signal(channel("msg", destination_id, topic or ""))
        else:  # a receiver here returns with the message, without reading it back
            handed = Payload(payload.data or b"", payload.serialization)
            self.notifier.signal(channel("recv", destination_id, str(delivery.handed_to)), handed)

    def send_bulk(
        self,
        messages: Sequence[SendMessage],
        *,
        serialization_type: object = None,
        to_forks: bool = False,
    ) -> None:
        """Queue every message, in one transaction; one operation when sent from a workflow."""
        checked = checked_messages(messages)
        destinations = ", ".join(dict.fromkeys(repr(m.destination_id) for m in checked))
        where = f"DBOS.send_bulk to workflow(s) {destinations}" if destinations else "send_bulk"
        check_serialization_type(serialization_type, where)
        self._send_all(checked, SEND_BULK, to_forks=to_forks, indexed=True)

    def _send_all(
        self, messages: list[SendMessage], name: str, *, to_forks: bool, indexed: bool
    ) -> None:
        """Send ``messages`` with `Store.send_messages`, recorded as operation ``name``."""
        ctx = self._workflow()
        fence = ctx or self._in_step()
        sender = current_workflow_id()
        payloads = [
            self._encode(
                m.message, f"message to workflow {m.destination_id!r}", sender or m.destination_id
            )
            for m in messages
        ]
        step = None
        if ctx is not None:
            position, recorded = self._position(ctx, name)
            if recorded is not None:
                self.engine.replay_value(ctx, recorded)
                return
            step = self._step(ctx, position, name)
            origin = workflow_origin(ctx.workflow_id, position, ctx.owner_token)
            origins: list[str | None] = [origin for _ in messages]
        elif not messages:
            return
        else:
            unkeyed = any(m.idempotency_key is None for m in messages)
            given = _given_workflow_id() if unkeyed else None
            origins = [f"{m.destination_id}|{given}" if given else None for m in messages]
        outgoing = _outgoing(messages, payloads, origins, indexed=indexed)
        try:
            delivery = self.store.send_messages(
                outgoing, to_forks=to_forks, step=step,
                owner_token=fence.owner_token if fence is not None else None,
                sender_id=fence.workflow_id if fence is not None else None,
            )  # fmt: skip
        except WriteRefused as exc:
            assert fence is not None  # noqa: S101 - only a fenced write is refused
            raise refused_error(fence, exc.reason) from None
        if delivery.missing:
            raise _no_destination(delivery.missing)
        for destination, topic in delivery.queues:
            self.notifier.signal(channel("msg", destination, topic or ""))

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

        names = (channel("msg", ctx.workflow_id, topic or ""), handed_off, cancel_channel(ctx))
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

    def set_event(self, key: str, value: Any, *, serialization_type: object = None) -> None:
        """Publish ``value`` under ``key`` for the calling workflow (replacing an older one)."""
        workflow_id = current_workflow_id()
        if workflow_id is None:
            raise DBOSException(
                f"set_event() must be called from within a workflow or one of its steps (key "
                f"{key!r}): events belong to the workflow that sets them."
            )
        check_serialization_type(
            serialization_type, f"DBOS.set_event({key!r}) in workflow {workflow_id!r}"
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
                function_id=self._step_position(),
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
            return _Wait(None, 0, names, lookup, clock.monotonic() + timeout_seconds)
        deadline = self._durable_deadline(ctx, timeout_seconds)
        position, recorded = self._position(ctx, GET_EVENT)
        if recorded is not None:
            return _Recorded(self.engine.replay_value(ctx, recorded))
        return _Wait(ctx, position, (*names, cancel_channel(ctx)), lookup, deadline)

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


def _given_workflow_id() -> str | None:
    """From plain code, an enclosing ``SetWorkflowID`` names a send (and is used up by it)."""
    return take_next_options().workflow_id if current_workflow_id() is None else None


def _outgoing(
    messages: list[SendMessage],
    payloads: list[Payload],
    origins: list[str | None],
    *,
    indexed: bool,
) -> list[OutgoingMessage]:
    """The messages as stored, each under its ID (see `message_id`)."""
    outgoing = []
    for i, (m, payload, origin) in enumerate(zip(messages, payloads, origins, strict=True)):
        index = i if indexed else None
        key = message_id(m.destination_id, m.idempotency_key, origin=origin, index=index)
        data = payload.data or b""
        outgoing.append(
            OutgoingMessage(key, m.destination_id, m.topic, data, payload.serialization)
        )
    return outgoing


def _no_destination(missing: tuple[str, ...]) -> DBOSNonExistentWorkflowError:
    names = ", ".join(map(repr, missing))
    return DBOSNonExistentWorkflowError(
        "`send` destination",
        missing[0],
        message=f"Non-existent `send` destination workflow ID: {missing[0]}. No workflow has "
        f"the ID {names}, so nothing was sent. Check the destination ID (start the workflow "
        "before sending to it).",
    )
