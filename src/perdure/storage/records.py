"""The records Perdure keeps in its system database, as the storage contract passes them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import Enum


def new_owner_token() -> int:
    """A fresh owner token: every claim of a workflow gives it a new one.

    Random, not counted: two processes claiming at once can never draw the same token without
    reading each other's, and a token says nothing to guess. 62 bits fit a signed BIGINT.
    """
    return secrets.randbits(62) + 1


class WorkflowStatusString(str, Enum):
    """A workflow's status, as ``WorkflowStatus.status`` and listings' filters give it.

    An Enum, as in DBOS (``WorkflowStatusString.ENQUEUED.value``), whose members are also the
    strings themselves (``status == WorkflowStatusString.SUCCESS`` compares with the stored
    text). ``DELAYED`` is reported for an enqueued workflow whose delay has not passed; it is
    stored as ``ENQUEUED`` with the time it may start.
    """

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"

    def __str__(self) -> str:
        return str(self.value)  # "SUCCESS" in messages and f-strings, on every Python version

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


TERMINAL_STATUSES = (
    WorkflowStatusString.SUCCESS,
    WorkflowStatusString.ERROR,
    WorkflowStatusString.CANCELLED,
    WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
)


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
    # The token of its current claim: only the execution holding it may write for it.
    owner_token: int = 0


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
    # The owner token of the execution that wrote it: how a retried write knows it committed.
    owner_token: int | None = None


STEP_COLUMNS = tuple(StepRow.__dataclass_fields__)


@dataclass(frozen=True)
class StartOutcome:
    """Result of recording a new workflow: whether this call created it, and the stored row."""

    created: bool
    row: WorkflowRow


class Unrecorded:
    """Why a write of an execution was refused (the store changed nothing)."""

    CANCELLED = "cancelled"  # the workflow was cancelled (or timed out) meanwhile
    LOST = "lost"  # another execution owns the workflow now (a newer claim), or it ended
    # The writer still owns the workflow, but the position was recorded by an execution that
    # lost it in the instant before this one's claim: that record stands, and is replayed.
    TAKEN = "taken"


@dataclass(frozen=True)
class WorkflowClaim:
    """Which PENDING workflows to take over for one process, under a fresh owner token.

    Exactly one of ``from_instances`` (their PENDING workflows) and ``workflow_id`` (that one
    workflow, if it is still owned by ``expected_token``) is set. Only workflows named in
    ``names`` whose application version is ``app_version`` or unset ("") are claimed, at
    most ``limit``. Each claim counts a recovery attempt (the caller dead-letters a workflow
    past its attempts).
    """

    executor_id: str
    instance_id: str
    token: int
    names: tuple[str, ...]
    app_version: str
    from_instances: tuple[str, ...] = ()
    workflow_id: str | None = None
    expected_token: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class Payload:
    """A stored value and the format it was written in."""

    data: bytes | None
    serialization: str


@dataclass(frozen=True)
class HandedMessage:
    """A message handed to a receiver's position, as an authenticated notification carried it:
    valid only for the execution holding ``owner_token`` (a later one reads its step)."""

    payload: Payload
    owner_token: int


@dataclass(frozen=True)
class Delivery:
    """What `Store.send_message` did with a message.

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
    owners: tuple[str, ...] | None = None  # instance IDs
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

    @property
    def is_global(self) -> bool:
        """Whether claims must take turns: a limit that holds across all processes."""
        return self.concurrency is not None or self.rate_limit is not None


QUEUE_COLUMNS = tuple(QueueRecord.__dataclass_fields__)


@dataclass(frozen=True)
class Occupancy:
    """What holds a queue (or one partition of it) back, read inside a claim transaction."""

    partition_key: str | None
    running: int  # PENDING workflows of the queue in every process
    running_here: int  # those owned by the claiming executor
    recent_starts_ms: tuple[int, ...]  # dequeue times within the rate-limit window, oldest first
    now_ms: int  # the database's clock when the claim read this


@dataclass(frozen=True)
class QueueClaim:
    """One claim of ready workflows from a queue by one process.

    The queue's limits are those stored for it (every process enforces the same ones);
    ``default`` stands in when nothing is stored. At most ``batch`` workflows are claimed, and
    only those named in ``names`` whose application version is ``app_version`` or unset.
    """

    default: QueueRecord
    executor_id: str
    instance_id: str
    token: int
    names: tuple[str, ...]
    app_version: str
    batch: int


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


@dataclass(frozen=True)
class ExecutorRecord:
    """One launched process as its heartbeats record it (times: the database's clock, ms).

    ``lock_key`` names the lock the process holds while it lives (a PostgreSQL advisory lock,
    or a byte of the lock file next to a SQLite database); ``silent_ms`` is how long ago its
    last heartbeat was, by the database's clock when read.
    """

    instance_id: str
    executor_id: str
    app_version: str
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int
    lock_key: int | None = None
    silent_ms: int = 0


EXECUTOR_COLUMNS = tuple(ExecutorRecord.__dataclass_fields__)[:-1]  # silent_ms is computed
