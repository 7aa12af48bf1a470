"""The storage contract: the records Perdure keeps and the operations the core needs on them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

_UNAVAILABLE = "_perdure_system_database_unavailable"


def mark_unavailable(exc: BaseException) -> BaseException:
    """Tag a driver error meaning "the system database could not be used" (lost, closed)."""
    setattr(exc, _UNAVAILABLE, True)
    return exc


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` came from the system database being unusable, not from user code.

    Such a failure says nothing about the workflow: it must stay PENDING and be recovered,
    never be recorded as the workflow's error.
    """
    return bool(getattr(exc, _UNAVAILABLE, False))


class WorkflowStatusString:
    """The status strings stored in ``workflow_status.status``."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    ENQUEUED = "ENQUEUED"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"


@dataclass
class WorkflowRow:
    """One row of ``workflow_status``: a workflow execution and its outcome."""

    workflow_id: str
    status: str
    name: str
    class_name: str | None
    config_name: str | None
    inputs: bytes | None
    output: bytes | None
    error: bytes | None
    serialization: str
    executor_id: str
    instance_id: str
    app_version: str
    queue_name: str | None
    authenticated_user: str | None
    created_at: int
    updated_at: int
    recovery_attempts: int
    workflow_timeout_ms: int | None
    workflow_deadline_epoch_ms: int | None
    parent_workflow_id: str | None
    forked_from: str | None
    deduplication_id: str | None
    priority: int
    # Queued workflows only: the partition whose limits apply, the earliest start time of a
    # delayed enqueue, and when a dequeue loop claimed it (what rate limits count).
    queue_partition_key: str | None = None
    not_before_epoch_ms: int | None = None
    dequeued_at_epoch_ms: int | None = None


WORKFLOW_COLUMNS = tuple(WorkflowRow.__dataclass_fields__)


@dataclass
class StepRow:
    """One row of ``operation_outputs``: the checkpoint of one operation of a workflow."""

    workflow_id: str
    function_id: int
    function_name: str
    output: bytes | None
    error: bytes | None
    child_workflow_id: str | None
    serialization: str
    started_at_epoch_ms: int
    completed_at_epoch_ms: int


STEP_COLUMNS = tuple(StepRow.__dataclass_fields__)


@dataclass
class StartOutcome:
    """Result of inserting a workflow: whether this call created it, and the stored row."""

    created: bool
    row: WorkflowRow


class Unrecorded:
    """Why a step checkpoint was not written."""

    CONFLICT = "conflict"  # another execution recorded this position first
    CANCELLED = "cancelled"  # the workflow was cancelled (or timed out) meanwhile


class SystemStore(Protocol):
    """Everything the durable core asks of a system database.

    Each method is one round trip on the success path unless its docstring says otherwise.
    Implementations translate driver errors into Perdure errors at this boundary.
    """

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema; concurrent callers serialise."""

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    def reset(self) -> None:
        """Drop every table Perdure owns (tests and ``reset_system_database``)."""

    def hold_connection(self) -> AbstractContextManager[None]:
        """While open, this thread's statements reuse one connection (a workflow's steps)."""

    def insert_workflow(self, row: WorkflowRow) -> StartOutcome:
        """Insert ``row`` unless its ID exists; return the stored row either way."""

    def insert_child_workflow(self, row: WorkflowRow, parent_step: StepRow) -> StartOutcome:
        """Insert a child workflow and the parent's step naming it, in one transaction.

        Raises `StepRejected` (and inserts nothing) if the parent is no longer PENDING or its
        position is already recorded.
        """

    def record_step(self, step: StepRow) -> str | None:
        """Write a step checkpoint if its workflow is PENDING.

        Returns None when written, else an `Unrecorded` reason (read in a second query, only on
        that failure path).
        """

    def load_steps(self, workflow_id: str) -> list[StepRow]:
        """All recorded steps of a workflow, ordered by position."""

    def get_step(self, workflow_id: str, function_id: int) -> StepRow | None:
        """One recorded step, or None."""

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The workflow's row, or None if unknown."""

    def complete_workflow(
        self, workflow_id: str, *, status: str, output: bytes | None, error: bytes | None
    ) -> bool:
        """Record the final status if still PENDING; False if it was not (e.g. cancelled)."""

    def set_status(self, workflow_id: str, status: str, *, only_from: tuple[str, ...]) -> bool:
        """Change the status if it currently is one of ``only_from``."""

    def add_result_waiter(self, workflow_id: str, waiter_id: str) -> None:
        """Ask for a notification when the workflow ends (a wait from another process)."""

    def remove_result_waiter(self, workflow_id: str, waiter_id: str) -> None:
        """Withdraw `add_result_waiter`."""

    def pending_workflows(self, executor_id: str, instance_id: str) -> list[tuple[str, str]]:
        """(ID, owner instance) of PENDING workflows of ``executor_id`` owned by other instances."""

    def claim_for_recovery(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        dead_owner: str,
        max_recovery_attempts: int,
        executor_id: str | None = None,
    ) -> WorkflowRow | None:
        """Take over a PENDING workflow still owned by ``dead_owner``, counting the attempt.

        With ``executor_id`` the workflow also moves to that executor (a takeover of another
        executor's work); without, it stays with its executor (recovery at launch).

        Comparing with the owner seen dead (not the current one) means a workflow that another
        launch has just claimed is never taken from it.

        Returns the claimed row (status MAX_RECOVERY_ATTEMPTS_EXCEEDED when attempts ran out),
        or None if another instance claimed it first or it is no longer PENDING.
        """


# -- messages, events and streams ------------------------------------------------------------


class StepRejected(Exception):
    """A step checkpoint sharing a transaction was refused; the transaction rolled back."""

    def __init__(self, reason: str) -> None:
        self.reason = reason  # an `Unrecorded` value
        super().__init__(reason)


@dataclass(frozen=True)
class Payload:
    """A stored value and the format it was written in."""

    data: bytes | None
    serialization: str


@dataclass(frozen=True)
class Delivery:
    """What `MessagingStore.send_message` did with a message.

    ``outcome`` is "sent", "duplicate" (a message with that ID was sent before) or
    "no_destination". ``handed_to`` is set when a receiver was blocked in ``recv``: the message
    was recorded straight away as that receiver's step at this position.
    """

    outcome: str
    handed_to: int | None = None


@dataclass(frozen=True)
class StreamEntry:
    """One value of a stream, or its end marker (``closed``)."""

    offset: int
    value: Payload
    closed: bool


class MessagingStore(Protocol):
    """What messages, events and streams need; ``step`` checkpoints share the transaction.

    Methods taking a ``step`` raise ``StepRejected`` (with an `Unrecorded` reason) and roll back
    when the workflow is no longer PENDING or the position is taken.
    """

    def send_message(
        self,
        *,
        message_id: str,
        destination_id: str,
        topic: str | None,
        message: bytes,
        serialization: str,
        recv_step_name: str,
        step: StepRow | None = None,
    ) -> Delivery:
        """Deliver a message: hand it to a receiver blocked in ``recv`` (recording its step,
        named ``recv_step_name``) when no older message of the topic is queued, else queue it.
        """

    def receive_message(
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        """The message of ``step``'s position: one handed off there already, else the oldest
        queued message of the topic, taken with ``step`` (holding it) recorded atomically.

        With none, registers the workflow as waiting at that position (for senders to hand
        off to) and returns None, recording nothing. Raises `StepRejected` (taking nothing)
        when the step cannot be recorded.
        """

    def stop_waiting(self, destination_id: str, topic: str | None, function_id: int) -> bool:
        """Withdraw the registration of a receiver at ``function_id`` (False if it was gone).

        When this returns, no sender can start a hand-off to that position, and one that took
        the registration has committed: the position's step shows whether it did.
        """

    def has_message(self, destination_id: str, topic: str | None) -> bool:
        """Whether a message is waiting."""

    def set_event(
        self,
        workflow_id: str,
        key: str,
        value: bytes,
        serialization: str,
        step: StepRow | None = None,
    ) -> None:
        """Publish or replace an event."""

    def get_event(self, workflow_id: str, key: str) -> Payload | None:
        """An event's value, or None."""

    def get_all_events(self, workflow_id: str) -> dict[str, Payload]:
        """All events of a workflow."""

    def write_stream(
        self,
        workflow_id: str,
        key: str,
        value: bytes | None,
        serialization: str,
        *,
        closed: bool,
        step: StepRow | None = None,
    ) -> None:
        """Append to a stream (or close it)."""

    def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        """A stream's entries from an offset on."""

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The workflow's row, or None."""


# -- management: listing, cancel, resume, fork, delete, garbage collection -----------------


@dataclass(frozen=True)
class WorkflowQuery:
    """Filters, order and paging of a workflow listing; None means "any".

    Times are ``created_at`` bounds in epoch milliseconds, both inclusive. Without
    ``with_inputs`` / ``with_outputs`` those columns are not read (the rows hold None).
    """

    workflow_ids: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    app_versions: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None
    queue_names: tuple[str, ...] | None = None
    queued_only: bool = False
    workflow_id_prefix: str | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    limit: int | None = None
    offset: int | None = None
    newest_first: bool = False
    with_inputs: bool = True
    with_outputs: bool = True


@dataclass(frozen=True)
class QueueCounts:
    """How many workflows of one queue wait (ENQUEUED) and run (PENDING)."""

    queue_name: str
    enqueued: int
    pending: int


class ManagementStore(Protocol):
    """What operators' calls need beyond the core (`SystemStore` covers reads of one row)."""

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The workflow's row, or None."""

    def load_steps(self, workflow_id: str) -> list[StepRow]:
        """All recorded steps of a workflow, ordered by position."""

    def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        """Workflows matching ``query``, ordered by creation time (then ID)."""

    def queue_counts(self) -> list[QueueCounts]:
        """Waiting and running counts of every queue that has unfinished workflows."""

    def list_queues(self) -> list[QueueRecord]:
        """Every stored queue definition, by name."""

    def list_executors(self) -> list[ExecutorRecord]:
        """Every recorded process, most recent heartbeat first."""

    def cancel_workflow_tree(self, workflow_id: str) -> list[str] | None:
        """Cancel a workflow and all its descendants that are PENDING or ENQUEUED.

        Returns the IDs of the workflow and all its descendants (cancelled or already
        finished), or None if the workflow does not exist.
        """

    def resume_workflow(
        self, workflow_id: str, *, executor_id: str, instance_id: str, recovery_attempts: int
    ) -> WorkflowRow | None:
        """Make a CANCELLED, dead-lettered, ENQUEUED or PENDING workflow PENDING again.

        It is taken off its queue, owned by ``instance_id`` of ``executor_id``, and its
        deadline is cleared. Returns the updated row, or None if it does not exist or finished.
        """

    def requeue_workflow(self, workflow_id: str, *, queue_name: str) -> bool:
        """Put a CANCELLED, dead-lettered, ENQUEUED or PENDING workflow on ``queue_name``.

        It becomes ENQUEUED there as a plain entry (no priority, partition, delay or
        deduplication ID), with no timeout or deadline and its recovery attempts reset, for
        whichever process claims it next. Returns False if it does not exist or finished.
        """

    def fork_workflow(self, row: WorkflowRow, *, source_id: str, start_step: int) -> bool:
        """Insert ``row`` and copy the source's steps before ``start_step``, atomically.

        Returns False (and changes nothing) if a workflow with ``row``'s ID already exists.
        """

    def delete_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        """Delete workflows (and their descendants if asked) with their steps; the IDs deleted."""

    def newest_created_at(self, rank: int) -> int | None:
        """The ``created_at`` of the ``rank``-th newest workflow (1-based), or None."""

    def delete_finished_batch(self, *, created_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` of the oldest finished workflows created before a time.

        One short transaction; PENDING and ENQUEUED workflows are never deleted. Returns the
        number deleted.
        """

    def schema_version(self) -> int | None:
        """The applied migration number, or None if the database has no Perdure schema."""


# -- queues -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuePlacement:
    """Where and how an enqueued workflow waits: its queue and its enqueue options."""

    queue_name: str
    deduplication_id: str | None = None
    priority: int = 0
    partition_key: str | None = None
    not_before_epoch_ms: int | None = None

    def place(self, row: WorkflowRow) -> WorkflowRow:
        """``row`` recorded ENQUEUED on this queue instead of PENDING.

        A timeout of its own runs from the dequeue, not from the enqueue: the claim sets the
        deadline.
        """
        own_timeout = row.workflow_timeout_ms is not None
        return replace(
            row,
            status=WorkflowStatusString.ENQUEUED,
            queue_name=self.queue_name,
            deduplication_id=self.deduplication_id,
            priority=self.priority,
            queue_partition_key=self.partition_key,
            not_before_epoch_ms=self.not_before_epoch_ms,
            workflow_deadline_epoch_ms=None if own_timeout else row.workflow_deadline_epoch_ms,
        )


@dataclass(frozen=True)
class QueueRecord:
    """A queue definition as stored in the ``queues`` table (visible to clients and the CLI)."""

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    rate_limit: int | None
    rate_period_sec: float | None
    priority_enabled: bool
    partition_queue: bool
    polling_interval_sec: float


QUEUE_COLUMNS = tuple(QueueRecord.__dataclass_fields__)


@dataclass(frozen=True)
class Occupancy:
    """What holds a queue (or one partition of it) back, read inside a claim transaction."""

    partition_key: str | None
    running: int  # PENDING workflows of the queue in every process
    running_here: int  # those owned by the claiming executor
    recent_starts_ms: tuple[int, ...]  # dequeue times within the rate-limit window, oldest first


@dataclass(frozen=True)
class ClaimRequest:
    """One claim of ready workflows from a queue by one process."""

    queue_name: str
    executor_id: str
    instance_id: str
    now_ms: int
    partitioned: bool
    # How far back dequeue times count (the limiter's period); None: no rate limit.
    window_ms: int | None
    # Whether a concurrency limit (global or per process) needs the running counts.
    count_running: bool
    # Claims of one queue must not overlap (global concurrency or rate limit): take the
    # queue's lock first. Without limits, concurrent claims only skip each other's rows.
    serialize: bool


class QueueStore(Protocol):
    """What queues need beyond starting workflows: definitions and the claim of ready work."""

    def save_queue(self, record: QueueRecord) -> None:
        """Insert or replace a queue definition."""

    def get_queue(self, name: str) -> QueueRecord | None:
        """A stored queue definition, or None."""

    def list_queues(self) -> list[QueueRecord]:
        """Every stored queue definition, by name."""

    def claim_queued(
        self, request: ClaimRequest, admit: Callable[[Occupancy], int]
    ) -> list[WorkflowRow]:
        """In one transaction: read each ready partition's occupancy, ask ``admit`` how many
        to start, and mark that many of its oldest ready workflows (by priority, then creation)
        PENDING for the requesting process. Returns the claimed rows.
        """

    def next_ready_at(self, queue_name: str, now_ms: int) -> int | None:
        """The earliest future not-before time of the queue's delayed workflows, or None."""


# -- schedules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRecord:
    """A run-time schedule as stored in the ``schedules`` table."""

    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str  # the cron expression
    context: bytes  # the serialized context argument of every run
    serialization: str  # the format of ``context``
    paused: bool
    created_at: int  # epoch ms


SCHEDULE_COLUMNS = tuple(ScheduleRecord.__dataclass_fields__)


class ScheduleStore(Protocol):
    """Run-time schedules, which every process's scheduler re-reads."""

    def insert_schedule(self, record: ScheduleRecord) -> bool:
        """Store a new schedule; False (nothing written) if its name is taken."""

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        """A stored schedule, or None."""

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every stored schedule, by name."""

    def set_schedule_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; False if there is no such schedule."""

    def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False if there was no such schedule."""


# -- executors: heartbeats and takeover ---------------------------------------------------------


@dataclass(frozen=True)
class ExecutorRecord:
    """One launched process as its heartbeats record it (times: the database's clock, ms)."""

    instance_id: str
    executor_id: str
    app_version: str
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int


EXECUTOR_COLUMNS = tuple(ExecutorRecord.__dataclass_fields__)


class ExecutorStore(Protocol):
    """Heartbeats of launched processes, and what a takeover of a dead one needs."""

    def beat(self, record: ExecutorRecord) -> None:
        """Insert this process's row, or refresh its heartbeat to the database's time now."""

    def dead_instances(self, *, silent_for_ms: int, exclude: str) -> list[str]:
        """Instances whose last heartbeat is older than ``silent_for_ms``, except ``exclude``."""

    def pending_of_instance(self, instance_id: str) -> list[tuple[str, str]]:
        """(ID, owner instance) of the PENDING workflows owned by ``instance_id``."""

    def forget_instance(self, instance_id: str, *, silent_for_ms: int) -> bool:
        """Delete a dead instance's row once it owns no PENDING workflow and is still silent."""
