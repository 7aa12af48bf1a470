"""What messaging operations share: the calling workflow, its positions and checkpoints, and the
payloads they store."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from typing_extensions import Self

from perdure.clock import deadline_at, now_ms
from perdure.execution.context import (
    WorkflowContext,
    current_step,
    current_workflow,
    enclosing_workflow,
)
from perdure.execution.notifier import Notifier, channel
from perdure.execution.steps import wake_time
from perdure.execution.workflow import WorkflowEngine
from perdure.serialization import Payloads
from perdure.storage.records import Payload, StepRow
from perdure.storage.store import Store


class WorkflowOperations:
    """Operations over one engine (for checkpoints) and its store; a client has no engine."""

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
    def of(cls, engine: WorkflowEngine) -> Self:
        """Operations over a launched engine (the store it uses and its checkpoints)."""
        return cls(engine.store, engine.payloads, engine.notifier, engine)

    def _workflow(self) -> WorkflowContext | None:
        """The workflow calling, if this process runs workflows (a client never does)."""
        return current_workflow() if self._engine is not None else None

    def _in_step(self) -> WorkflowContext | None:
        """The workflow whose step is calling (its token fences the write), if any."""
        if self._engine is None or current_workflow() is not None:
            return None
        return enclosing_workflow()

    def _step_position(self) -> int | None:
        """The position of the step of a workflow that is calling, if one is: what its
        events and stream entries are recorded under, so a rewind knows their step."""
        if self._in_step() is None:
            return None
        step = current_step()
        return step.step_id if step is not None else None

    def _waiting(self) -> AbstractContextManager[None]:
        """Around a wait: no pool slot, no connection kept (a launched process only)."""
        return self._engine.waiting() if self._engine is not None else nullcontext()

    def _position(self, ctx: WorkflowContext, name: str) -> tuple[int, StepRow | None]:
        """Take the next position; the recorded step there if this is a replay."""
        position = ctx.take_position()
        ctx.check_live()
        return position, self.engine.replayed_step(ctx, position, name)

    def _step(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        payload: Payload | None = None,
        *,
        started_ms: int | None = None,
    ) -> StepRow:
        return self.engine.encoded_step(
            ctx,
            position,
            name,
            now_ms() if started_ms is None else started_ms,
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
        return deadline_at(wake_ms)


def cancel_channel(ctx: WorkflowContext) -> str:
    """The channel a cancellation of the waiting workflow (in this process) signals."""
    return channel("cancel", ctx.workflow_id)
