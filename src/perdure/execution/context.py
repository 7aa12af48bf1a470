"""What the current thread or task is executing: its workflow, its step, and pending options."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, get_args

from typing_extensions import Self

from perdure.clock import now_ms
from perdure.error import DBOSException, DBOSWorkflowCancelledError
from perdure.execution.auth import NOBODY, Authentication
from perdure.execution.tracing import OTEL_CARRIER_ATTRIBUTE, trace_carrier
from perdure.storage.records import StepRow


@dataclass
class WorkflowContext:
    """One execution of one workflow: its ID, its replay log and its position counter."""

    workflow_id: str
    name: str
    # Steps recorded by earlier executions, by position; empty on a first execution, which
    # therefore never reads before a step.
    recorded: dict[int, StepRow]
    deadline_epoch_ms: int | None
    # The owner token of this execution's claim: every write it makes names it, and is
    # refused once another claim replaced it.
    owner_token: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    # True when re-executing after a crash or restart (recorded steps may exist).
    resumed: bool = False
    # Operations are numbered from 1, as in DBOS. A workflow recorded by Perdure 0.1
    # numbered them from 0: its replay keeps counting from 0 (see `replay_from`).
    next_position: int = 1
    # Who the workflow acts for: its recorded identity, set while its body runs.
    auth: Authentication = NOBODY
    # Recorded by Perdure 0.1: it replays as 0.1 ran it (positions from 0, stream reads and
    # zero-length sleeps taking no position), so an upgrade never breaks a workflow in flight.
    recorded_by_0_1: bool = False
    # Positions are handed out under a lock: async steps gathered in one workflow may start
    # from several tasks.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take_position(self) -> int:
        """The position of the next operation of this workflow (1, 2, 3, ...)."""
        with self._lock:
            position = self.next_position
            self.next_position += 1
            return position

    def take_position_if(self, accept: Callable[[StepRow | None], bool]) -> int | None:
        """Take the next position only if ``accept`` agrees, given what is recorded there
        (a patch marker is stepped over only where one was recorded)."""
        with self._lock:
            position = self.next_position
            if not accept(self.recorded.get(position)):
                return None
            self.next_position += 1
            return position

    def replay_from(self, steps: list[StepRow]) -> None:
        """Load the steps recorded by earlier executions, before the body runs again."""
        self.recorded = {s.function_id: s for s in steps}
        if 0 in self.recorded:  # recorded with the 0-based numbering of Perdure 0.1
            self.next_position = 0
            self.recorded_by_0_1 = True

    def check_live(self) -> None:
        """Raise `DBOSWorkflowCancelledError` if cancelled or past the deadline."""
        if self.cancelled.is_set():
            raise DBOSWorkflowCancelledError(workflow_id=self.workflow_id)
        if self.deadline_epoch_ms is not None and now_ms() >= self.deadline_epoch_ms:
            self.cancelled.set()
            raise DBOSWorkflowCancelledError(
                f"Workflow {self.workflow_id!r} passed its deadline (SetWorkflowTimeout) and was "
                "cancelled at its next step. Give it a longer timeout, or resume it with "
                "DBOS.resume_workflow.",
                workflow_id=self.workflow_id,
            )


@dataclass(frozen=True)
class StepContext:
    """The step currently running and its attempt numbers."""

    step_id: int
    current_attempt: int
    max_attempts: int | None


@dataclass
class StepStatus:
    """What ``DBOS.step_status`` returns inside a step."""

    step_id: int
    current_attempt: int | None
    max_attempts: int | None


@dataclass
class NextWorkflowOptions:
    """Options set by `SetWorkflowID` / `SetWorkflowTimeout` for the next workflow started."""

    workflow_id: str | None = None
    timeout_seconds: float | None = None
    has_timeout: bool = False
    reuse_policy: str | None = None  # "reject": an ID in use raises, else it is joined
    attributes: dict[str, Any] | None = None  # SetWorkflowAttributes: this workflow's only


@dataclass
class _IdSlot:
    """The ID of a `SetWorkflowID` block, emptied by the first workflow that uses it."""

    workflow_id: str | None
    reuse_policy: str | None = None


@dataclass(frozen=True)
class NextEnqueueOptions:
    """Options set by `SetEnqueueOptions` for the next workflow enqueued."""

    deduplication_id: str | None = None
    priority: int | None = None
    queue_partition_key: str | None = None
    delay_seconds: float | None = None
    app_version: str | None = None
    duplication_policy: str | None = None


@dataclass
class _EnqueueSlot:
    """The options of a `SetEnqueueOptions` block, and the workflow (if any) that opened it:
    they apply to every enqueue the block makes itself, not to its workflows' children."""

    options: NextEnqueueOptions
    opener: WorkflowContext | None


_workflow: ContextVar[WorkflowContext | None] = ContextVar("perdure_workflow", default=None)
_step: ContextVar[StepContext | None] = ContextVar("perdure_step", default=None)
# Separate variables, so a nested SetWorkflowTimeout shares (not copies) the pending ID.
_next_id: ContextVar[_IdSlot | None] = ContextVar("perdure_next_id", default=None)
_next_timeout: ContextVar[tuple[float | None] | None] = ContextVar(
    "perdure_next_timeout", default=None
)
_sql_session: ContextVar[Any] = ContextVar("perdure_sql_session", default=None)
# The trace context of a PropagateOtelContext block, with the workflow that opened it.
_next_trace: ContextVar[tuple[dict[str, str] | None, WorkflowContext | None] | None] = ContextVar(
    "perdure_next_trace", default=None
)
# The attributes of a SetWorkflowAttributes block, with the workflow (if any) that opened it.
_next_attributes: ContextVar[tuple[dict[str, Any] | None, WorkflowContext | None] | None] = (
    ContextVar("perdure_next_attributes", default=None)
)
_next_enqueue: ContextVar[_EnqueueSlot | None] = ContextVar("perdure_next_enqueue", default=None)


def current_workflow() -> WorkflowContext | None:
    """The workflow executing here, or None (also None inside a step: steps are leaves)."""
    if _step.get() is not None:
        return None
    return _workflow.get()


def enclosing_workflow() -> WorkflowContext | None:
    """The workflow executing here, inside its steps too."""
    return _workflow.get()


def current_workflow_id() -> str | None:
    """The ID of the enclosing workflow, inside its steps too."""
    ctx = _workflow.get()
    return ctx.workflow_id if ctx is not None else None


def current_step() -> StepContext | None:
    """The step executing here, or None."""
    return _step.get()


@dataclass(frozen=True)
class _EnteredWorkflow:
    workflow: Token[WorkflowContext | None]
    step: Token[StepContext | None]
    next_id: Token[_IdSlot | None]
    next_timeout: Token[tuple[float | None] | None]
    next_enqueue: Token[_EnqueueSlot | None]


def enter_workflow(ctx: WorkflowContext) -> _EnteredWorkflow:
    """Run as workflow ``ctx`` from here: not inside a step, and with no pending options.

    Options set around the call (SetWorkflowID, SetWorkflowTimeout) belong to this workflow,
    not to the children its body starts: those inherit its deadline instead.
    """
    return _EnteredWorkflow(
        _workflow.set(ctx),
        _step.set(None),
        _next_id.set(None),
        _next_timeout.set(None),
        _next_enqueue.set(None),
    )


def leave_workflow(entered: _EnteredWorkflow) -> None:
    """Undo `enter_workflow`."""
    _next_enqueue.reset(entered.next_enqueue)
    _next_timeout.reset(entered.next_timeout)
    _next_id.reset(entered.next_id)
    _step.reset(entered.step)
    _workflow.reset(entered.workflow)


def set_step(step: StepContext | None) -> Token[StepContext | None]:
    """Enter a step context; undo with `reset_step`."""
    return _step.set(step)


def reset_step(token: Token[StepContext | None]) -> None:
    """Leave the step context entered with `set_step`."""
    _step.reset(token)


def sql_session() -> Any:
    """The SQLAlchemy session of the running transaction, or None."""
    return _sql_session.get()


def set_sql_session(session: Any) -> Token[Any]:
    """Expose ``session`` as ``DBOS.sql_session``; undo with `reset_sql_session`."""
    return _sql_session.set(session)


def reset_sql_session(token: Token[Any]) -> None:
    """Undo `set_sql_session`."""
    _sql_session.reset(token)


def take_next_options() -> NextWorkflowOptions:
    """The options for the workflow being started now; an ID is used once."""
    slot = _next_id.get()
    workflow_id = slot.workflow_id if slot is not None else None
    policy = slot.reuse_policy if slot is not None and workflow_id is not None else None
    if slot is not None:
        slot.workflow_id = None
    tagged = _next_attributes.get()
    # Attributes belong to the workflows the block starts itself, not to their children.
    caller = current_workflow()
    attributes = tagged[0] if tagged is not None and tagged[1] is caller else None
    propagated = _next_trace.get()
    if propagated is not None and propagated[1] is caller and propagated[0] is not None:
        attributes = {**(attributes or {}), OTEL_CARRIER_ATTRIBUTE: propagated[0]}
    timeout = _next_timeout.get()
    if timeout is None:
        return NextWorkflowOptions(workflow_id, reuse_policy=policy, attributes=attributes)
    return NextWorkflowOptions(
        workflow_id, timeout[0], has_timeout=True, reuse_policy=policy, attributes=attributes
    )


class _OptionBlock:
    """A ``with`` block that sets a context variable on entry and restores it on exit."""

    _token: Token[Any] | None = None

    def _enter(self) -> Token[Any]:
        raise NotImplementedError

    def _exit(self, token: Token[Any]) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._token = self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None  # noqa: S101 - __exit__ follows __enter__
        self._exit(self._token)


# DBOS's names for the values SetWorkflowID and SetEnqueueOptions take.
WorkflowIDReusePolicy = Literal["return-existing", "reject"]
DuplicationPolicy = Literal["reject", "return-existing"]
REUSE_POLICIES: tuple[str, ...] = get_args(WorkflowIDReusePolicy)
DUPLICATION_POLICIES: tuple[str, ...] = get_args(DuplicationPolicy)


class SetWorkflowID(_OptionBlock):
    """Give the next workflow started in this block the ID ``wfid``.

    Workflow IDs are idempotency keys: starting a workflow with an ID that exists returns the
    existing execution's handle or result instead of running it again. With
    ``workflow_id_reuse_policy="reject"`` it raises `DBOSWorkflowIDInUseError` instead (inside
    a workflow the refusal is recorded, so a replay raises it again).

    Example:
        >>> with SetWorkflowID("order-42"):
        ...     checkout("order-42")
    """

    def __init__(self, wfid: str, *, workflow_id_reuse_policy: str | None = None) -> None:
        if not isinstance(wfid, str) or not wfid.strip():
            raise ValueError(
                f"SetWorkflowID needs a workflow ID that is a non-blank string, got {wfid!r}"
            )
        if workflow_id_reuse_policy not in (None, *REUSE_POLICIES):
            raise ValueError(
                f"SetWorkflowID(workflow_id_reuse_policy=...) must be one of "
                f"{', '.join(REUSE_POLICIES)}, got {workflow_id_reuse_policy!r}"
            )
        self.workflow_id = wfid
        self.reuse_policy = workflow_id_reuse_policy

    def _enter(self) -> Token[Any]:
        return _next_id.set(_IdSlot(self.workflow_id, self.reuse_policy))

    def _exit(self, token: Token[Any]) -> None:
        _next_id.reset(token)


class SetWorkflowTimeout(_OptionBlock):
    """Cancel workflows started in this block (and their children) after
    ``workflow_timeout_sec`` seconds.

    The deadline is stored with the workflow, so it holds across restarts. ``None`` removes an
    inherited timeout.
    """

    def __init__(self, workflow_timeout_sec: float | None) -> None:
        timeout_seconds = workflow_timeout_sec
        if timeout_seconds is not None and (
            isinstance(timeout_seconds, bool)
            or not isinstance(timeout_seconds, (int, float))
            or timeout_seconds <= 0
        ):
            raise ValueError(
                f"SetWorkflowTimeout needs a positive number of seconds or None, "
                f"got {timeout_seconds!r}"
            )
        self.timeout_seconds = timeout_seconds

    def _enter(self) -> Token[Any]:
        return _next_timeout.set((self.timeout_seconds,))

    def _exit(self, token: Token[Any]) -> None:
        _next_timeout.reset(token)


def check_attributes(attributes: object, where: str) -> dict[str, Any] | None:
    """``attributes`` if it is None or a dict of JSON values; raises naming ``where`` else.

    Raises:
        DBOSException: Not a dict, or a value JSON cannot hold.
    """
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        raise DBOSException(f"{where}: workflow attributes must be a dict, not {attributes!r}.")
    try:
        json.dumps(attributes)
    except (TypeError, ValueError) as exc:
        raise DBOSException(
            f"{where}: workflow attributes must be JSON-serializable values (str, numbers, "
            f"bools, None, lists, dicts): {exc}."
        ) from exc
    return attributes


class SetWorkflowAttributes(_OptionBlock):
    """Attach ``attributes`` (a dict of JSON values) to the workflows started or enqueued
    in this block; their children do not inherit them. ``list_workflows(attributes=...)``
    filters on them, ``DBOS.update_workflow_attributes`` changes them later."""

    def __init__(self, attributes: dict[str, Any] | None) -> None:
        self.attributes = check_attributes(attributes, "SetWorkflowAttributes")

    def _enter(self) -> Token[Any]:
        return _next_attributes.set((self.attributes, current_workflow()))

    def _exit(self, token: Token[Any]) -> None:
        _next_attributes.reset(token)


class PropagateOtelContext(_OptionBlock):
    """Put the workflows started or enqueued in this block on the caller's trace (or on
    ``context``'s): the W3C trace context travels in their attributes, so their spans join
    the trace wherever and whenever they run (after a queue, after a recovery). Their
    children do not inherit it; open the block again inside a workflow to pass it on."""

    def __init__(self, context: object | None = None) -> None:
        self.context = context

    def _enter(self) -> Token[Any]:
        return _next_trace.set((trace_carrier(self.context), current_workflow()))

    def _exit(self, token: Token[Any]) -> None:
        _next_trace.reset(token)


def take_enqueue_options() -> NextEnqueueOptions:
    """The options for the workflow being enqueued now: those of the enclosing
    `SetEnqueueOptions` block, as in DBOS (every enqueue in the block gets them)."""
    slot = _next_enqueue.get()
    if slot is None or slot.opener is not current_workflow():
        return NextEnqueueOptions()
    return slot.options


def refuse_enqueue_options(workflow_name: str) -> str | None:
    """Refuse to start a workflow (not enqueue it) inside a `SetEnqueueOptions` block that
    sets an option only a queue acts on: it would be silently ignored, and a deduplication ID
    stored on a row without a queue would collide once recovery gave it one. Returns the
    block's ``app_version``, which a start keeps, as in DBOS (it says who may recover it).

    Raises:
        DBOSException: Such an option is set.
    """
    slot = _next_enqueue.get()
    if slot is None or slot.opener is not current_workflow():
        return None
    given = slot.options
    queue_only = {
        "deduplication_id": given.deduplication_id,
        "priority": given.priority,
        "queue_partition_key": given.queue_partition_key,
        "delay_seconds": given.delay_seconds,
    }
    named = [f"{key}={value!r}" for key, value in queue_only.items() if value is not None]
    if given.duplication_policy == "return-existing":  # "reject" is what a start does anyway
        named.append("duplication_policy='return-existing'")
    if named:
        raise DBOSException(
            f"SetEnqueueOptions({', '.join(named)}) is set, but workflow {workflow_name!r} is "
            "not being enqueued: those options require a queue (queue.enqueue, "
            "DBOS.enqueue_workflow). Enqueue it, or start it outside the block."
        )
    return given.app_version


# Priorities are stored as 32-bit integers; 0 means "none" and dequeues first.
MAX_PRIORITY = 2**31 - 1


class SetEnqueueOptions(_OptionBlock):
    """Options for the workflows enqueued in this block (``queue.enqueue`` and friends), as
    in DBOS: each enqueue the block makes gets them (not the children of those workflows).

    Args:
        deduplication_id: While a workflow with this ID is enqueued or running on the queue,
            enqueueing another raises `DBOSQueueDeduplicatedError`.
        priority: 1 (first) to 2**31 - 1, on queues created with ``priority_enabled=True``;
            workflows of equal priority run in enqueue order.
        queue_partition_key: The partition of a ``partition_queue=True`` queue; its limits
            apply per partition.
        delay_seconds: The workflow is not started before this many seconds have passed.
        app_version: Only processes of this application version run it (default: this
            process's version).
        duplication_policy: ``"return-existing"`` makes an enqueue whose
            ``deduplication_id`` is taken return the handle of the workflow holding it
            instead of raising; ``"reject"`` (the default) raises.

    Example:
        >>> with SetEnqueueOptions(deduplication_id="user-7", priority=1):
        ...     queue.enqueue(send_report, 7)
    """

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
        app_version: str | None = None,
        duplication_policy: str | None = None,
    ) -> None:
        if duplication_policy not in (None, *DUPLICATION_POLICIES):
            raise DBOSException(
                f"Invalid duplication_policy {duplication_policy!r} in SetEnqueueOptions: use "
                f"one of {', '.join(DUPLICATION_POLICIES)}."
            )
        if duplication_policy == "return-existing" and deduplication_id is None:
            raise DBOSException(
                "SetEnqueueOptions(duplication_policy='return-existing') requires a "
                "deduplication_id: it returns the workflow that holds that ID."
            )
        if app_version == "":
            app_version = None  # DBOS.application_version of an unversioned app
        for name, value in (
            ("deduplication_id", deduplication_id),
            ("queue_partition_key", queue_partition_key),
            ("app_version", app_version),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(
                    f"SetEnqueueOptions({name}=...) needs a non-empty string, got {value!r}"
                )
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not 1 <= priority <= MAX_PRIORITY
        ):
            raise ValueError(
                f"Invalid priority {priority!r}: SetEnqueueOptions(priority=...) needs an "
                f"integer from 1 (first) to {MAX_PRIORITY}."
            )
        if delay_seconds is not None and (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, (int, float))
            or delay_seconds < 0
        ):
            raise ValueError(
                f"SetEnqueueOptions(delay_seconds=...) needs a number of seconds >= 0, "
                f"got {delay_seconds!r}"
            )
        self.options = NextEnqueueOptions(
            deduplication_id,
            priority,
            queue_partition_key,
            delay_seconds,
            app_version,
            duplication_policy,
        )

    def _enter(self) -> Token[Any]:
        return _next_enqueue.set(_EnqueueSlot(self.options, current_workflow()))

    def _exit(self, token: Token[Any]) -> None:
        _next_enqueue.reset(token)
