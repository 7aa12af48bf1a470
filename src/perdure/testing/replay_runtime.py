"""The read-only runtime a replay runs workflows in: every operation is served from the record.

A replayed workflow runs its real body, with a `ReplayContext` as its context, in a runtime
whose engine is a `ReplayEngine`. Every operation the body asks for (step, transaction,
sleep, message, event, stream, child workflow, patch) looks up its position in the record,
as a resumed workflow does; the replay engine then, instead of running what the record does
not hold, stops the body with `ReplayInterrupt`, noting why on the context: the code asked
for another operation (a divergence), for one after the end of a finished workflow's record
(a divergence), or for one after the end of an unfinished record (where a live run would go
on: no divergence). No step body runs and nothing is written: the engine has no database at
all (`NoDatabase`), so anything that would read or write live state fails the replay instead.

None of this touches the normal path: a launched process never builds these classes, and
the methods overridden here are the ones every operation already calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from perdure.config import Settings
from perdure.error import DBOSInitializationError
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import WorkflowContext, enclosing_workflow
from perdure.execution.coordination import PATCH_PREFIX
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.registry import RegisteredWorkflow, Registry
from perdure.execution.steps import SLEEP_STEP_NAME
from perdure.execution.tracing import Tracing
from perdure.execution.workflow import (
    ActiveWorkflow,
    Invocation,
    WorkflowEngine,
    recorded_outcome,
)
from perdure.messaging.operations import Messaging
from perdure.queues.dequeue import Dequeuer
from perdure.queues.queue import QueueDirectory, QueueSpec
from perdure.runtime import Runtime
from perdure.scheduling.scheduler import DeclaredSchedules, Scheduler
from perdure.storage.records import TERMINAL_STATUSES, StepRow, WorkflowRow
from perdure.testing.verdicts import Divergence, Operation, Stop, operation_kind


@dataclass(frozen=True)
class Failure:
    """Why a replay could not go on: what the record cannot serve."""

    reason: str


Event = Divergence | Stop | Failure


class ReplayInterrupt(BaseException):
    """Stops a replayed workflow's body where the record can serve it no further.

    A BaseException, so user code (``except Exception``) does not swallow it. What stopped
    the body is noted on its `ReplayContext` the first time, so code that swallows it anyway
    cannot change the verdict.
    """

    def __init__(self, event: Event) -> None:
        super().__init__(getattr(event, "reason", None) or repr(event))
        self.event = event


@dataclass
class ReplayContext(WorkflowContext):
    """The context of a replayed workflow: its record, what the code used of it, and the first
    event that stopped it.

    A workflow that finished (SUCCESS or ERROR) may ask for nothing beyond its record; an
    unfinished one stops there, as a live run would go on.
    """

    finished: bool = False
    registry: Registry | None = None
    # Rows of the children its operations started: what a direct call of one returns.
    children: Mapping[str, WorkflowRow] = field(default_factory=dict)
    served: set[int] = field(default_factory=set)
    first_event: Event | None = None
    abandoned: bool = False
    _events: threading.Lock = field(default_factory=threading.Lock)

    def abandon(self) -> None:
        """Stop the body at its next operation or wait (its replay gave up waiting for it)."""
        self.abandoned = True
        self.cancelled.set()

    def check_live(self) -> None:
        """Every operation checks this first: an abandoned replay goes no further, whatever
        runtime the facade points to by then."""
        if self.abandoned:
            raise self.note(Failure("its replay was abandoned"))
        super().check_live()

    @property
    def last_recorded(self) -> int:
        """The last position the record holds (the one before the first, if none)."""
        return max(self.recorded, default=self.next_position - 1)

    def note(self, event: Event) -> ReplayInterrupt:
        """Keep ``event`` if it is the first; the signal that stops the body."""
        with self._events:
            if self.first_event is None:
                self.first_event = event
        return ReplayInterrupt(event)

    def operation(self, position: int, name: str, *, recorded: StepRow | None = None) -> Operation:
        """``name`` at ``position`` as a report shows it."""
        workflow = recorded is not None and recorded.child_workflow_id is not None
        if self.registry is not None and name in self.registry.workflows:
            workflow = True
        return Operation(position, name, operation_kind(name, workflow=workflow))

    def beyond(self, position: int, name: str) -> ReplayInterrupt:
        """The code asked for ``name`` at a position the record does not hold."""
        if self.finished and position > self.last_recorded:
            actual = self.operation(position, name)
            return self.note(Divergence(position, "extra", None, actual))
        if position > self.last_recorded:
            reason = f"the record ends at position {position}, where a live run goes on"
        else:
            reason = (
                f"position {position} was never recorded (its operation was in flight when "
                "the record was taken); the replay checks no further"
            )
        return self.note(Stop(position, reason))

    def serve(self, position: int, name: str) -> StepRow:
        """The record at ``position`` for an operation named ``name``, or stop the body."""
        recorded = self.recorded.get(position)
        if recorded is None:
            raise self.beyond(position, name)
        if recorded.function_name != name:
            expected = self.operation(position, recorded.function_name, recorded=recorded)
            actual = self.operation(position, name)
            raise self.note(Divergence(position, "different", expected, actual))
        with self._events:
            self.served.add(position)
        return recorded

    def take_position_if(self, accept: Callable[[StepRow | None], bool]) -> int | None:
        """A patch's position: stepped over where its marker is recorded, refused where
        another operation is. Where the record holds nothing, a finished workflow took the
        old path (its run ended before the patch existed); an unfinished one stops there."""
        with self._lock:
            position = self.next_position
            recorded = self.recorded.get(position)
            if recorded is None and accept(None):  # a live run would record a marker here
                if self.finished and position > self.last_recorded:
                    return None
                raise self.beyond(position, f"{PATCH_PREFIX}...")
            if recorded is None or not accept(recorded):
                return None
            self.next_position += 1
        with self._events:
            self.served.add(position)
        return position


def _replaying() -> ReplayContext | None:
    ctx = enclosing_workflow()
    return ctx if isinstance(ctx, ReplayContext) else None


class NoDatabase:
    """The replay engine's database: there is none.

    Waiting needs no connection, so those context managers do nothing; any other call
    (a live read, such as a handle's ``get_status``, or a write) fails the replay, naming
    what the code asked for.
    """

    url = "replay:"
    # Asked of the application database by a transaction before it looks at its record: the
    # configured serializer reads its outcome, and no other database holds a checkpoint.
    serializer = None
    is_system_database = True

    @contextmanager
    def released(self) -> Iterator[None]:
        yield

    @contextmanager
    def hold_connection(self) -> Iterator[None]:
        yield

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
            failure = Failure(
                f"the code read or wrote live state ({name}) where the record holds nothing; "
                "a replay serves only recorded operations"
            )
            ctx = _replaying()
            raise ctx.note(failure) if ctx is not None else ReplayInterrupt(failure)

        return refuse


class ReplayEngine(WorkflowEngine):
    """A `WorkflowEngine` whose every operation is served from the replayed record."""

    def replayed_step(self, ctx: WorkflowContext, position: int, name: str) -> StepRow | None:
        """The recorded operation at ``position``; stops the body where there is none, or
        where the record has another one. A recorded sleep is served as over: it waited
        when it was recorded, and a replay never waits."""
        if not isinstance(ctx, ReplayContext):
            raise TypeError(f"workflow {ctx.workflow_id!r} is not a replay")
        recorded = ctx.serve(position, name)
        if name == SLEEP_STEP_NAME:
            over = self.payloads.encode(0, what="replayed wake-up time")
            return replace(recorded, output=over, error=None, serialization=self.payloads.format)
        return recorded

    def await_result(self, workflow_id: str, active: ActiveWorkflow | None = None) -> Any:
        """A child's outcome, from its recorded row (a direct call of a child workflow)."""
        return self._child_outcome(workflow_id)

    async def await_result_async(
        self, workflow_id: str, active: ActiveWorkflow | None = None
    ) -> Any:
        """`await_result` in a coroutine."""
        return self._child_outcome(workflow_id)

    def _child_outcome(self, workflow_id: str) -> Any:
        ctx = _replaying()
        if ctx is None:
            raise TypeError(f"no replay is awaiting workflow {workflow_id!r}")
        child = ctx.children.get(workflow_id)
        if child is not None and child.status in TERMINAL_STATUSES:
            return recorded_outcome(self.payloads, child)
        if not ctx.finished:
            position = ctx.next_position
            raise ctx.note(Stop(position, f"it waits for child workflow {workflow_id!r}"))
        raise ctx.note(
            Failure(
                f"the outcome of child workflow {workflow_id!r} is not in the record "
                "(deleted, or not exported with it)"
            )
        )


class ReplayRuntime(Runtime):
    """Stands in for the facade's runtime while a replay runs.

    Code of a replayed workflow (a `ReplayContext` is current) gets the replay engine; every
    other caller gets the runtime this one stands in for (``live``), so a launched instance's
    own workflows, running meanwhile in this process, are not disturbed.
    """

    def __init__(
        self,
        engine: ReplayEngine,
        *,
        live: Runtime | None,
        settings: Settings,
        registry: Registry,
        queues: QueueDirectory,
        schedules: DeclaredSchedules,
    ) -> None:
        super().__init__(settings, registry, queues, schedules)
        self._live = live
        self._replay_engine = engine
        self._replay_messaging = Messaging.of(engine)
        self.notifier = getattr(live, "notifier", engine.notifier)

    def _other(self) -> Runtime:
        if self._live is None:
            raise DBOSInitializationError(
                "A replay is running in this process and Perdure is not launched: only the "
                "replayed workflows run. Launch Perdure to run other workflows meanwhile."
            )
        return self._live

    @property
    def engine(self) -> WorkflowEngine:
        """The replay engine for a replayed workflow, else the live runtime's."""
        return self._replay_engine if _replaying() else self._other().engine

    @property
    def messaging(self) -> Messaging:
        """Messaging over the replay engine for a replayed workflow, else the live one."""
        return self._replay_messaging if _replaying() else self._other().messaging

    @property
    def app_db(self) -> ApplicationDatabase:
        """The live runtime's application database (its transactions' serializer), or none
        at all without one: a replayed transaction is served from its record, never run."""
        if not _replaying():
            return self._other().app_db
        try:
            return self._other().app_db
        except DBOSInitializationError:  # not launched: nothing to run transactions on anyway
            return NoDatabase()  # type: ignore[return-value]  # see NoDatabase

    @property
    def tracing(self) -> Tracing | None:
        """The live runtime's tracing, if any (a replay records no spans)."""
        return getattr(self._live, "tracing", None)

    @property
    def dequeuer(self) -> Dequeuer | None:
        """The live runtime's dequeue loop, if any."""
        return self._live.dequeuer if self._live is not None else None

    @property
    def scheduler(self) -> Scheduler | None:
        """The live runtime's scheduler loop, if any."""
        return self._live.scheduler if self._live is not None else None

    def launch(self) -> None:
        """Launch the runtime this one stands in for."""
        self._other().launch()

    def destroy(self, workflow_completion_timeout_sec: float = 0) -> None:
        """Destroy the runtime this one stands in for (the replay's own holds nothing)."""
        if self._live is not None:
            self._live.destroy(workflow_completion_timeout_sec)

    def wait_for_recovery(self, timeout_sec: float | None = None) -> None:
        """Wait for the live runtime's recovery."""
        if self._live is not None:
            self._live.wait_for_recovery(timeout_sec)

    def reset_system_database(self, url: str | None = None) -> None:
        """Refused during a replay."""
        self._other().reset_system_database(url)

    def stored_queue(self, name: str) -> QueueSpec | None:
        """A replayed workflow finds queues declared in code only (it reads no database)."""
        if _replaying():
            return None
        return self._other().stored_queue(name)

    def call_workflow(
        self, entry: RegisteredWorkflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A direct call: a child of a replayed workflow (served from the record), or live."""
        if _replaying():
            return super().call_workflow(entry, args, kwargs)
        return self._other().call_workflow(entry, args, kwargs)

    async def call_workflow_async(
        self, entry: RegisteredWorkflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """`call_workflow` for async workflows."""
        if _replaying():
            return await super().call_workflow_async(entry, args, kwargs)
        return await self._other().call_workflow_async(entry, args, kwargs)

    def start_workflow(self, call: Invocation) -> WorkflowHandle[Any]:
        """A start: a child of a replayed workflow (served from the record), or live."""
        if _replaying():
            return super().start_workflow(call)
        return self._other().start_workflow(call)

    async def start_workflow_async(self, call: Invocation) -> WorkflowHandleAsync[Any]:
        """`start_workflow` from async code."""
        if _replaying():
            return await super().start_workflow_async(call)
        return await self._other().start_workflow_async(call)

    def enqueue_workflow(
        self, queue_name: str, spec: QueueSpec | None, call: Invocation
    ) -> WorkflowHandle[Any]:
        """An enqueue: by a replayed workflow (served from the record), or live."""
        if _replaying():
            return super().enqueue_workflow(queue_name, spec, call)
        return self._other().enqueue_workflow(queue_name, spec, call)
