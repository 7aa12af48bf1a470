"""Starting, running, finishing and awaiting workflows: the engine behind ``@DBOS.workflow``.

Every execution holds the owner token of the claim that gave it its workflow; every write it
makes names that token. When another claim replaced it (a takeover, a resume, a recovery
elsewhere), the next write is refused and the execution stops with
`DBOSWorkflowConflictIDError`, which user code cannot swallow, recording nothing more.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from perdure.clock import now_ms
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSBaseException,
    DBOSConflictingWorkflowError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSSystemDatabaseError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
    DBOSWorkflowIDInUseError,
)
from perdure.execution.auth import current_auth, recorded_auth, reset_auth, set_auth
from perdure.execution.context import (
    NextWorkflowOptions,
    WorkflowContext,
    current_workflow,
    enter_workflow,
    leave_workflow,
    refuse_enqueue_options,
    take_next_options,
)
from perdure.execution.notifier import Notifier, channel
from perdure.execution.pool import WorkerPool
from perdure.execution.registry import MethodKind, RegisteredWorkflow, Registry
from perdure.execution.tracing import Tracing
from perdure.logs import get_logger
from perdure.serialization import Payloads
from perdure.storage.records import (
    TERMINAL_STATUSES,
    QueuePlacement,
    StartOutcome,
    StepRow,
    Unrecorded,
    WorkflowRow,
    new_owner_token,
)
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.store import Store, WriteRefused

logger = get_logger(__name__)


@dataclass
class Invocation:
    """A call of a registered workflow: the function, what it is bound to, and its arguments."""

    entry: RegisteredWorkflow
    bound: object | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def call(self) -> Any:
        """Call the user's function (a coroutine for async workflows), with its arguments
        validated first if it asks (an invalid argument is the workflow's error)."""
        args, kwargs = self.entry.validated(self.args, self.kwargs)
        if self.bound is not None:
            return self.entry.func(self.bound, *args, **kwargs)
        return self.entry.func(*args, **kwargs)


@dataclass
class ActiveWorkflow:
    """A workflow executing in this process; waiters block on ``done``."""

    ctx: WorkflowContext
    # Writes the outcome in the format of the workflow's row (its inputs' format), even if
    # this process's default serializer differs.
    payloads: Payloads
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    # False when the execution stopped without an outcome (it lost the workflow, or the
    # database failed it): waiters then read the outcome from the database.
    outcome_known: bool = False
    # With tracing: the trace context of whoever started it, parent of the workflow's span.
    trace_parent: object = None


# Makes the row of a workflow being started: (its ID, the parent workflow or None, the
# options of `take_next_options`) -> the row to record.
RowBuilder = Callable[[str, WorkflowContext | None, NextWorkflowOptions], WorkflowRow]


@dataclass
class Started:
    """What starting a workflow decided: run it here (``active`` set) or await another run."""

    workflow_id: str
    active: ActiveWorkflow | None


def is_system_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is (or was caused by) the system database failing, not user code."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DBOSSystemDatabaseError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class WorkflowEngine:
    """Runs workflows durably against one system store."""

    def __init__(
        self,
        *,
        store: Store,
        payloads: Payloads,
        registry: Registry,
        pool: WorkerPool,
        executor_id: str,
        app_version: str,
        notifier: Notifier,
        tracing: Tracing | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing
        self.payloads = payloads
        self.registry = registry
        self.pool = pool
        self.executor_id = executor_id
        self.app_version = app_version
        # Unique per launch: tells this process's workflows from those of any other process.
        self.instance_id = uuid.uuid4().hex
        self.notifier = notifier
        self._lock = threading.Lock()
        # Async workflows running as tasks of some event loop (`execute_as_task`).
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: dict[str, ActiveWorkflow] = {}

    # -- starting ------------------------------------------------------------------------------

    def start(
        self,
        call: Invocation,
        *,
        queued: QueuePlacement | None = None,
        schedule_name: str | None = None,
    ) -> Started:
        """Durably record a new workflow (one round trip) or find the existing one by ID.

        With ``queued`` the workflow is recorded ENQUEUED on that queue and not run here: a
        dequeue loop claims it. Inside a workflow it is a child either way. A schedule's tick
        records ``schedule_name``.
        """

        pinned_version = None if queued is not None else refuse_enqueue_options(call.entry.name)

        def build(
            workflow_id: str, parent: WorkflowContext | None, options: NextWorkflowOptions
        ) -> WorkflowRow:
            row = self._new_row(workflow_id, call, parent, options)
            row.schedule_name = schedule_name
            if pinned_version is not None:  # only processes of that version may recover it
                row.app_version = pinned_version
            return row

        return self.start_row(call.entry.name, build, take_next_options(), queued=queued)

    def start_row(
        self,
        name: str,
        build: RowBuilder,
        options: NextWorkflowOptions,
        *,
        queued: QueuePlacement | None = None,
    ) -> Started:
        """`start` for the workflow named ``name`` whose row ``build`` makes (called only on a
        first execution: a replayed parent gets its recorded child back, nothing rebuilt).

        ``options`` are those `take_next_options` gives: its ID (else ``<parent>-<position>``
        inside a workflow, else a new UUID) and reuse policy hold here, the rest is for
        ``build``. A workflow started without ``queued`` is run here: `start` only.
        """
        parent = current_workflow()
        position = parent.take_position() if parent is not None else None
        if parent is not None and position is not None:
            replayed = self._replayed_child(parent, position, name)
            if replayed is not None:
                return Started(replayed, None)
        workflow_id = options.workflow_id or (
            f"{parent.workflow_id}-{position}" if parent is not None else str(uuid.uuid4())
        )
        row = build(workflow_id, parent, options)
        if queued is not None:
            row = queued.place(row)
        link = None
        if parent is not None and position is not None:
            link = self._child_link(parent, position, name, row)
        reject = options.reuse_policy == "reject"
        try:
            # Under "reject" the parent's link is written after the start, once it is known
            # whether this start created the child (or was refused, which is recorded instead).
            outcome = self.store.start_workflow(row, parent_step=None if reject else link)
        except WriteRefused as exc:
            assert parent is not None  # noqa: S101 - only a child's link is refused
            assert link is not None  # noqa: S101
            if exc.reason != Unrecorded.TAKEN:
                raise refused_error(parent, exc.reason) from None
            standing = self.store.load_steps(parent.workflow_id, position=link.function_id)
            return Started(self._child_of(parent, link.function_id, standing[0], name), None)
        except DBOSQueueDeduplicatedError as exc:
            holder = exc.holder_workflow_id
            if queued is None or queued.duplication_policy != "return-existing" or not holder:
                raise
            if link is not None and parent is not None:
                self._link_child(parent, replace(link, child_workflow_id=holder), name)
            return Started(holder, None)
        if reject:
            self._check_not_in_use(outcome, parent, link, name)
        if not outcome.created:
            self._check_same_function(outcome.row, name)
            return Started(workflow_id, None)
        if queued is not None:
            return Started(workflow_id, None)
        return Started(workflow_id, self._activate(outcome.row, resumed=False))

    def _replayed_child(self, parent: WorkflowContext, position: int, name: str) -> str | None:
        """The child a replayed parent started at ``position`` (or the refusal it met,
        raised again); None on a first execution there."""
        parent.check_live()
        recorded = self.replayed_step(parent, position, name)
        if recorded is None:
            return None
        if recorded.error is not None:  # a refusal recorded by an earlier run
            self.replay_value(parent, recorded)
        return self._child_of(parent, position, recorded, name)

    def _child_link(
        self, parent: WorkflowContext, position: int, name: str, row: WorkflowRow
    ) -> StepRow:
        """The parent's step that records starting the child ``row`` at ``position``."""
        return StepRow(
            workflow_id=parent.workflow_id,
            function_id=position,
            function_name=name,
            output=None,
            error=None,
            child_workflow_id=row.workflow_id,
            serialization=self.payloads.format,
            started_at_epoch_ms=row.created_at,
            completed_at_epoch_ms=row.created_at,
            owner_token=parent.owner_token,
        )

    def _check_not_in_use(
        self,
        outcome: StartOutcome,
        parent: WorkflowContext | None,
        link: StepRow | None,
        name: str,
    ) -> None:
        """Under ``workflow_id_reuse_policy="reject"``: raise if the ID belonged to another
        workflow already; in a workflow, record the child's link or the refusal.

        A child this parent created before a crash (its link not yet written) is its own.
        """
        existing = outcome.row
        own = outcome.created or (
            parent is not None and existing.parent_workflow_id == parent.workflow_id
        )
        error = None
        if not own:
            error = DBOSWorkflowIDInUseError(existing.workflow_id, existing.status, existing.name)
        if parent is not None and link is not None:
            if error is not None:
                refusal = self.payloads.encode_error(error, workflow_id=parent.workflow_id)
                link = replace(link, child_workflow_id=None, error=refusal)
            self._link_child(parent, link, name)
        if error is not None:
            raise error

    def _link_child(self, parent: WorkflowContext, link: StepRow, name: str) -> None:
        """Record the parent's step for a child (or its refusal) written apart from the start."""
        standing = self.record_step(parent, link)
        if standing is not None:  # recorded by an earlier owner: replay that record
            if standing.error is not None:
                self.replay_value(parent, standing)
            self._child_of(parent, link.function_id, standing, name)

    @staticmethod
    def _child_of(parent: WorkflowContext, position: int, recorded: StepRow, name: str) -> str:
        """The child recorded at ``position`` of the parent (a replay)."""
        if recorded.child_workflow_id is None:
            raise DBOSUnexpectedStepError(
                parent.workflow_id, position, name, recorded.function_name
            )
        return recorded.child_workflow_id

    def _new_row(
        self,
        workflow_id: str,
        call: Invocation,
        parent: WorkflowContext | None,
        options: NextWorkflowOptions,
    ) -> WorkflowRow:
        """The row of a new workflow: who it acts for is the caller's identity, its attributes
        those of an enclosing `SetWorkflowAttributes` (never inherited from a parent)."""
        timeout_seconds, has_timeout = options.timeout_seconds, options.has_timeout
        auth = current_auth()
        now = now_ms()
        inputs = self.payloads.encode(
            {"args": call.args, "kwargs": call.kwargs},
            what=f"input of workflow {call.entry.name!r}",
            workflow_id=workflow_id,
        )
        timeout_ms = round(timeout_seconds * 1000) if timeout_seconds else None
        if has_timeout:
            deadline = now + timeout_ms if timeout_ms is not None else None
        else:  # children inherit the parent's deadline unless they set their own
            deadline = parent.deadline_epoch_ms if parent is not None else None
        return WorkflowRow(
            workflow_id=workflow_id,
            status=S.PENDING,
            name=call.entry.name,
            class_name=self._class_name(call),
            config_name=_config_name(call),
            inputs=inputs,
            output=None,
            error=None,
            serialization=self.payloads.format,
            executor_id=self.executor_id,
            instance_id=self.instance_id,
            app_version=self.app_version,
            queue_name=None,
            authenticated_user=auth.user,
            created_at=now,
            updated_at=now,
            recovery_attempts=1,
            workflow_timeout_ms=timeout_ms,
            workflow_deadline_epoch_ms=deadline,
            parent_workflow_id=parent.workflow_id if parent is not None else None,
            forked_from=None,
            deduplication_id=None,
            priority=0,
            owner_token=new_owner_token(),
            authenticated_roles=None if auth.roles is None else json.dumps(list(auth.roles)),
            assumed_role=auth.assumed_role,
            attributes=None if options.attributes is None else json.dumps(options.attributes),
        )

    def _class_name(self, call: Invocation) -> str | None:
        """The class recorded for a method: the instance's own class, not the defining one."""
        if call.entry.kind == MethodKind.INSTANCE and call.bound is not None:
            return self.registry.class_name_of(type(call.bound))
        if call.entry.kind == MethodKind.CLASS and isinstance(call.bound, type):
            return self.registry.class_name_of(call.bound)
        return call.entry.class_name

    @staticmethod
    def _check_same_function(row: WorkflowRow, name: str) -> None:
        if row.name != name:
            raise DBOSConflictingWorkflowError(
                row.workflow_id,
                "Workflow already exists with a different function name: workflow ID "
                f"{row.workflow_id!r} belongs to {row.name!r}, so it cannot be used to start "
                f"{name!r}. Use a different workflow ID.",
            )

    def _activate(self, row: WorkflowRow, *, resumed: bool) -> ActiveWorkflow | None:
        """Mark a workflow as executing here under ``row``'s owner token.

        None if this process already executes it under that token. An execution here under
        an older token is replaced: it stops at its next write, refused.
        """
        ctx = WorkflowContext(
            workflow_id=row.workflow_id,
            name=row.name,
            recorded={},
            deadline_epoch_ms=row.workflow_deadline_epoch_ms,
            owner_token=row.owner_token,
            resumed=resumed,
            auth=recorded_auth(row),
        )
        payloads = self.payloads.in_format(row.serialization, workflow_id=row.workflow_id)
        with self._lock:
            current = self._active.get(row.workflow_id)
            if current is not None and current.ctx.owner_token == row.owner_token:
                return None
            active = ActiveWorkflow(ctx, payloads)
            if self.tracing is not None:
                attributes = json.loads(row.attributes) if row.attributes else None
                here = self.tracing.current_context()
                active.trace_parent = self.tracing.parent_of(attributes, here)
            self._active[row.workflow_id] = active
            return active

    def resume(self, row: WorkflowRow) -> ActiveWorkflow | None:
        """Prepare to re-execute a claimed workflow; its recorded steps load (in one query)
        on the thread that runs it."""
        return self._activate(row, resumed=True)

    def invocation_of(self, row: WorkflowRow) -> Invocation:
        """Rebuild the call recorded in ``row`` (function, bound object and arguments)."""
        entry = self.registry.find_workflow(row.workflow_id, row.name)
        bound = self.registry.bound_target(
            row.workflow_id, entry, class_name=row.class_name, config_name=row.config_name
        )
        self.payloads.in_format(row.serialization, workflow_id=row.workflow_id)  # can resume?
        inputs = self.payloads.decode(
            row.inputs or b"",
            row.serialization,
            what="workflow inputs",
            workflow_id=row.workflow_id,
        )
        return Invocation(entry, bound, tuple(inputs["args"]), dict(inputs["kwargs"]))

    # -- executing -----------------------------------------------------------------------------

    def execute(self, active: ActiveWorkflow, call: Invocation) -> Any:
        """Run a sync workflow body in this thread and record its outcome."""
        with self.store.hold_connection():
            with self._running(active):
                value = call.call()
            return self._finish_success(active, value)

    async def execute_async(self, active: ActiveWorkflow, call: Invocation) -> Any:
        """Run an async workflow body in the current task and record its outcome.

        Its checkpoints run on this thread's held connection, which other workflows
        interleaved on the same event loop share: each statement is a blocking call, so they
        never overlap on it.
        """
        with self.store.hold_connection():
            with self._running(active):
                value = await call.call()
            return self._finish_success(active, value)

    @contextmanager
    def _running(self, active: ActiveWorkflow) -> Iterator[None]:
        """The body runs in the workflow's context; an exception it raises is recorded."""
        entered = enter_workflow(active.ctx)
        acting = set_auth(active.ctx.auth)  # the recorded identity, as long as the body runs
        try:
            with self._workflow_span(active):
                if active.ctx.resumed:
                    active.ctx.replay_from(self.store.load_steps(active.ctx.workflow_id))
                yield
        except BaseException as exc:
            self._finish_error(active, exc)
            raise
        finally:
            reset_auth(acting)
            leave_workflow(entered)

    def _workflow_span(self, active: ActiveWorkflow) -> AbstractContextManager[Any]:
        if self.tracing is None:
            return nullcontext()
        attributes = {
            "perdure.executor_id": self.executor_id,
            "perdure.app_version": self.app_version,
        }
        ctx = active.ctx
        return self.tracing.workflow(ctx.workflow_id, ctx.name, active.trace_parent, attributes)

    def step_span(
        self, ctx: WorkflowContext, name: str, position: int
    ) -> AbstractContextManager[Any]:
        """The tracing span of a step's execution (a no-op without tracing)."""
        if self.tracing is None:
            return nullcontext()
        return self.tracing.step(ctx.workflow_id, name, position)

    def execute_in_background(
        self,
        active: ActiveWorkflow,
        call: Invocation,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Run the workflow on the worker pool; its outcome reaches waiters through ``active``.

        ``on_done`` runs on the worker thread once the execution ends, however it ended.
        """

        def run() -> None:
            try:
                if call.entry.is_async:
                    asyncio.run(self._execute_then_await_tasks(active, call))
                else:
                    self.execute(active, call)
            except (Exception, DBOSBaseException) as exc:  # noqa: BLE001 - see below
                # Recorded in the database and handed to waiters; nothing else awaits it here.
                logger.debug("Background workflow %s ended with %r", active.ctx.workflow_id, exc)
            finally:
                if on_done is not None:
                    on_done()

        self.pool.submit(run)

    def execute_as_task(self, active: ActiveWorkflow, call: Invocation) -> None:
        """Run an async workflow as a task of the running event loop (its outcome reaches
        waiters through ``active``)."""
        task = asyncio.create_task(self._run_task(active, call))
        with self._lock:  # a reference until done: the loop holds only weak ones
            self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    async def _run_task(self, active: ActiveWorkflow, call: Invocation) -> None:
        try:
            await self.execute_async(active, call)
        except (Exception, DBOSBaseException) as exc:  # noqa: BLE001 - recorded in the database
            # (or, for a signal that stopped it, its record left as it stood)
            logger.debug("Workflow task %s ended with %r", active.ctx.workflow_id, exc)

    async def _execute_then_await_tasks(self, active: ActiveWorkflow, call: Invocation) -> None:
        """Run an async workflow on the worker's own event loop, then let the workflows it
        started as tasks of that loop and did not await finish: closing the loop would
        cancel them mid-run and leave them PENDING until recovery found them."""
        try:
            await self.execute_async(active, call)
        finally:
            loop = asyncio.get_running_loop()
            while left := self._tasks_of(loop):
                await asyncio.wait(left)  # their outcomes are recorded; children's too

    def _tasks_of(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        with self._lock:
            return [task for task in self._tasks if task.get_loop() is loop]

    def _finish_success(self, active: ActiveWorkflow, value: Any) -> Any:
        workflow_id = active.ctx.workflow_id
        try:
            output = active.payloads.encode(
                value, what=f"output of workflow {active.ctx.name!r}", workflow_id=workflow_id
            )
        except Exception as exc:
            self._finish_error(active, exc)
            raise
        with self._released(active):
            self._complete(active, S.SUCCESS, output=output, error=None, outcome=value)
        if active.error is not None:
            raise active.error
        return value

    def _finish_error(self, active: ActiveWorkflow, exc: BaseException) -> None:
        workflow_id = active.ctx.workflow_id
        with self._released(active):
            if isinstance(exc, DBOSWorkflowConflictIDError):
                logger.info("Workflow %s stopped here: %s", workflow_id, exc.message)
            elif is_system_failure(exc):
                # The system database failed us, not the workflow: it stays PENDING, owned by
                # this process, whose sweep resumes it (and waiters read its outcome).
                logger.error(
                    "Workflow %s stopped: %s; it stays PENDING and is resumed", workflow_id, exc
                )
            elif isinstance(exc, Exception):
                error = active.payloads.encode_error(exc, workflow_id=workflow_id)
                self._complete(active, S.ERROR, output=None, error=error, outcome=exc)
            elif isinstance(exc, DBOSWorkflowCancelledError):
                # A deadline noticed in memory is made durable; a cancel from elsewhere already is.
                token = active.ctx.owner_token
                self.store.finish_workflow(workflow_id, token, status=S.CANCELLED)
                active.error = DBOSAwaitedWorkflowCancelledError(workflow_id)
                active.outcome_known = True
            # Otherwise (KeyboardInterrupt, interpreter exit) the workflow stays PENDING for
            # this process's sweep or for recovery; waiters read the database.

    def _complete(
        self,
        active: ActiveWorkflow,
        status: str,
        *,
        output: bytes | None,
        error: bytes | None,
        outcome: Any,
    ) -> None:
        """Record the final status; what waiters get depends on whether it was still ours."""
        ctx = active.ctx
        reason = self.store.finish_workflow(
            ctx.workflow_id, ctx.owner_token, status=status, output=output, error=error
        )
        if reason is None:
            if status == S.SUCCESS:
                active.value = outcome
            else:
                active.error = outcome
            active.outcome_known = True
        elif reason == Unrecorded.CANCELLED:
            active.error = DBOSAwaitedWorkflowCancelledError(ctx.workflow_id)
            active.outcome_known = True
        else:
            active.error = DBOSWorkflowConflictIDError(ctx.workflow_id)

    @contextmanager
    def _released(self, active: ActiveWorkflow) -> Iterator[None]:
        """Release ``active`` afterwards even if the database write failed: waiters then
        fall back to reading the database."""
        try:
            yield
        finally:
            self._release(active)

    def _release(self, active: ActiveWorkflow) -> None:
        with self._lock:
            if self._active.get(active.ctx.workflow_id) is active:
                del self._active[active.ctx.workflow_id]
        active.done.set()
        self.notifier.signal(channel("end", active.ctx.workflow_id))

    def abandon(self, active: ActiveWorkflow) -> None:
        """Forget an execution that never started (its outcome stays unknown here)."""
        self._release(active)

    def cancel_local(self, workflow_id: str) -> None:
        """Signal a workflow executing here to stop at its next step or wait."""
        with self._lock:
            active = self._active.get(workflow_id)
        if active is not None:
            active.ctx.cancelled.set()
            # Its waits watch this channel: it re-checks and stops, nobody else wakes.
            self.notifier.signal(channel("cancel", workflow_id))

    # -- steps ---------------------------------------------------------------------------------

    def replayed_step(self, ctx: WorkflowContext, position: int, name: str) -> StepRow | None:
        """The recorded step at ``position`` if this is a replay; checks it has ``name``."""
        recorded = ctx.recorded.get(position)
        if recorded is not None and recorded.function_name != name:
            raise DBOSUnexpectedStepError(ctx.workflow_id, position, name, recorded.function_name)
        return recorded

    def replay_value(self, ctx: WorkflowContext, step: StepRow) -> Any:
        """The recorded output of ``step``, or raise its recorded error."""
        if step.error is not None:
            raise self.payloads.decode_error(
                step.error, step.serialization, workflow_id=ctx.workflow_id
            )
        if step.output is None:
            return None
        what = f"output of step {step.function_name!r}"
        return self.payloads.decode(
            step.output, step.serialization, what=what, workflow_id=ctx.workflow_id
        )

    def step_row(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        started_ms: int,
        *,
        value: Any = None,
        error: BaseException | None = None,
    ) -> StepRow:
        """The checkpoint of a finished operation, its output or error encoded for storage."""
        output = encoded_error = None
        if error is not None:
            encoded_error = self.payloads.encode_error(error, workflow_id=ctx.workflow_id)
        elif value is not None:
            what = f"output of step {name!r}"
            output = self.payloads.encode(value, what=what, workflow_id=ctx.workflow_id)
        return self.encoded_step(
            ctx, position, name, started_ms, output=output, error=encoded_error
        )

    def encoded_step(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        started_ms: int,
        *,
        output: bytes | None = None,
        error: bytes | None = None,
        serialization: str | None = None,
    ) -> StepRow:
        """The checkpoint of an operation whose outcome is encoded already (a message, an
        event's value), owned by the execution of ``ctx``."""
        return StepRow(
            workflow_id=ctx.workflow_id,
            function_id=position,
            function_name=name,
            output=output,
            error=error,
            child_workflow_id=None,
            serialization=serialization or self.payloads.format,
            started_at_epoch_ms=started_ms,
            completed_at_epoch_ms=now_ms(),
            owner_token=ctx.owner_token,
        )

    def record_step(self, ctx: WorkflowContext, step: StepRow) -> StepRow | None:
        """Checkpoint a step (one round trip); stop the workflow if it is no longer ours.

        Returns None when ``step`` is recorded, or the record that stands at its position
        instead (written by an execution that lost the workflow in the instant before this
        one's claim): the caller replays that one, so the record and this run agree.
        """
        if step.owner_token != ctx.owner_token:  # a step built elsewhere (a copied record)
            step = replace(step, owner_token=ctx.owner_token)
        reason = self.store.record_step(step)
        if reason is None:
            return None
        if reason == Unrecorded.TAKEN:
            standing = self.store.load_steps(step.workflow_id, position=step.function_id)
            if standing and standing[0].function_name == step.function_name:
                logger.warning(
                    "Workflow %s: step %d (%s) was recorded by its previous execution as this "
                    "one took over; replaying that record",
                    ctx.workflow_id,
                    step.function_id,
                    step.function_name,
                )
                return standing[0]
            reason = Unrecorded.LOST
        raise refused_error(ctx, reason)

    # -- awaiting ------------------------------------------------------------------------------

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait of this thread: it keeps no pool slot and no database connection.

        Waiting workflows then never starve running ones, and a parent waiting for a child
        queued behind it lets the child run.
        """
        with self.store.released(), self.pool.blocked():
            yield

    def await_result(self, workflow_id: str, active: ActiveWorkflow | None = None) -> Any:
        """Block until the workflow ends; return its output or raise its error.

        ``active`` is the execution this process started for it (kept by its handle): once it
        ended with a recorded outcome, that outcome is returned without a database read.
        """
        active = active or self._running_here(workflow_id)
        if active is not None:
            with self.waiting():
                active.done.wait()
            if _known_outcome(active):
                return _outcome_of(active)
        return self.wait_recorded_outcome(workflow_id)

    async def await_result_async(
        self, workflow_id: str, active: ActiveWorkflow | None = None
    ) -> Any:
        """`await_result` waiting on the event loop, taking no thread."""
        active = active or self._running_here(workflow_id)
        if active is not None:
            ended = active
            with self.waiting():
                await self.notifier.wait_for_async(
                    (channel("end", workflow_id),),
                    lambda: True if ended.done.is_set() else None,
                    deadline=None,
                )
            if _known_outcome(active):
                return _outcome_of(active)
        return await self.wait_recorded_outcome_async(workflow_id)

    def _running_here(self, workflow_id: str) -> ActiveWorkflow | None:
        with self._lock:
            return self._active.get(workflow_id)

    def _finished_row(self, workflow_id: str) -> WorkflowRow | None:
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError("target", workflow_id)
        return row if row.status in TERMINAL_STATUSES else None

    def wait_recorded_outcome(self, workflow_id: str) -> Any:
        """Wait until the workflow is terminal in the database, woken when it ends.

        The end of a workflow in this process, or a Postgres notification from another, wakes
        the wait at once; the notifier's polling covers other processes on SQLite.
        """
        check = partial(self._finished_row, workflow_id)
        with self.waiting():
            row = check()
            if row is None:
                # Registered, the end of the workflow notifies; checked again after registering.
                with self.watching_end(workflow_id):
                    row = self.notifier.wait_for(
                        (channel("end", workflow_id),), check, deadline=None
                    )
        assert row is not None  # noqa: S101 - no deadline: returns only when finished
        return self.recorded_outcome(row)

    async def wait_recorded_outcome_async(self, workflow_id: str) -> Any:
        """`wait_recorded_outcome` waiting on the event loop."""
        check = partial(self._finished_row, workflow_id)
        with self.waiting():
            row = check()
            if row is None:
                with self.watching_end(workflow_id):
                    row = await self.notifier.wait_for_async(
                        (channel("end", workflow_id),), check, deadline=None
                    )
        assert row is not None  # noqa: S101 - no deadline: returns only when finished
        return self.recorded_outcome(row)

    @contextmanager
    def watching_end(self, workflow_id: str) -> Iterator[None]:
        """Registered as a waiter, so the workflow's end notifies (from any process)."""
        waiter_id = uuid.uuid4().hex
        self.store.watch_result(workflow_id, waiter_id, watching=True)
        try:
            yield
        finally:
            self.store.watch_result(workflow_id, waiter_id, watching=False)

    def recorded_outcome(self, row: WorkflowRow) -> Any:
        """The output of a finished workflow, or raise the error it ended with."""
        return recorded_outcome(self.payloads, row)

    def is_active(self, workflow_id: str) -> bool:
        """Whether this process is executing the workflow now."""
        with self._lock:
            return workflow_id in self._active

    def active_tokens(self) -> dict[str, int]:
        """The owner token of every workflow executing here, by ID."""
        with self._lock:
            return {wid: a.ctx.owner_token for wid, a in self._active.items()}

    def wait_inactive(self, workflow_id: str, timeout_sec: float) -> bool:
        """Wait until this process no longer executes the workflow; False on timeout."""
        with self._lock:
            active = self._active.get(workflow_id)
        return active is None or active.done.wait(timeout_sec)


def recorded_outcome(payloads: Payloads, row: WorkflowRow) -> Any:
    """The output of a finished workflow, or raise the error it ended with."""
    if row.status == S.SUCCESS:
        if row.output is None:
            return None
        what = f"output of workflow {row.name!r}"
        return payloads.decode(
            row.output, row.serialization, what=what, workflow_id=row.workflow_id
        )
    if row.status == S.ERROR:
        raise payloads.decode_error(
            row.error or b"", row.serialization, workflow_id=row.workflow_id
        )
    if row.status == S.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(row.workflow_id)
    raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(row.workflow_id)


def _known_outcome(active: ActiveWorkflow) -> bool:
    """Whether ``active`` ended with an outcome to hand out without a database read.

    A cancellation is not final (a resume continues the workflow): the database tells.
    """
    cancelled = isinstance(active.error, DBOSAwaitedWorkflowCancelledError)
    return active.outcome_known and not cancelled


def _outcome_of(active: ActiveWorkflow) -> Any:
    if active.error is not None:
        raise active.error
    return active.value


def _config_name(call: Invocation) -> str | None:
    if call.entry.kind == MethodKind.INSTANCE and call.bound is not None:
        return getattr(call.bound, "config_name", None)
    return None


def refused_error(ctx: WorkflowContext, reason: str) -> BaseException:
    """What a refused write means for the running workflow: cancelled, or no longer ours."""
    if reason == Unrecorded.CANCELLED:
        ctx.cancelled.set()
        return DBOSWorkflowCancelledError(workflow_id=ctx.workflow_id)
    return DBOSWorkflowConflictIDError(ctx.workflow_id)
