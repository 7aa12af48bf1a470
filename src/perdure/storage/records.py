"""The records Perdure keeps in its system database, as the storage contract passes them."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal


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
    # When it ended (SUCCESS, ERROR, CANCELLED or dead-lettered); None while it may still run.
    completed_at: int | None = None
    # Whether a fork was made of it (the fork records ``forked_from``).
    was_forked_from: bool = False
    # The schedule whose tick started it, if one did.
    schedule_name: str | None = None
    # Who it acts for besides ``authenticated_user``: the user's roles (a JSON array) and the
    # role its function assumed; and its custom attributes (a JSON object).
    authenticated_roles: str | None = None
    assumed_role: str | None = None
    attributes: str | None = None


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


@dataclass(frozen=True)
class Rewind:
    """What a rewind found: the workflow's status when it was read (None: no such workflow),
    and whether it was rewound (only a finished workflow is)."""

    status: str | None
    rewound: bool


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
class OutgoingMessage:
    """One message of `Store.send_messages`, encoded; its ID makes its delivery idempotent."""

    message_id: str
    destination_id: str
    topic: str | None
    message: bytes
    serialization: str


@dataclass(frozen=True)
class BulkDelivery:
    """What `Store.send_messages` did.

    ``queues`` are the (destination, topic) pairs it wrote to now, fork copies included (empty
    when this very send had happened before); ``missing`` the destinations that do not exist,
    in which case nothing was written at all.
    """

    queues: tuple[tuple[str, str | None], ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamEntry:
    """One value of a stream, or its end marker (``closed``)."""

    offset: int
    value: Payload
    closed: bool


@dataclass(frozen=True)
class WorkflowQuery:
    """Filters, order and paging of a workflow listing; None means "any".

    Each tuple matches any of its values (an empty tuple matches nothing). Time bounds are
    epoch milliseconds, both inclusive: ``created_*`` bound the creation time, ``completed_*``
    the end, ``dequeued_*`` the last dequeue (a bound excludes rows without that time).
    ``queued_only`` keeps workflows on a queue, and unless ``statuses`` is given only the
    unfinished ones (PENDING, ENQUEUED). ``was_forked_from`` / ``is_fork`` / ``has_parent``
    keep rows of which a fork was made / that are forks / that are children (False: the
    opposite). Without ``with_inputs`` / ``with_outputs`` those columns are not read (the
    rows hold None).
    """

    workflow_ids: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    app_versions: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None
    queue_names: tuple[str, ...] | None = None
    owners: tuple[str, ...] | None = None  # instance IDs
    executor_ids: tuple[str, ...] | None = None
    forked_from: tuple[str, ...] | None = None
    parent_workflow_ids: tuple[str, ...] | None = None
    schedule_names: tuple[str, ...] | None = None
    workflow_id_prefixes: tuple[str, ...] | None = None
    # Attributes a row must have: (key, value as JSON text) pairs, all of them.
    attributes: tuple[tuple[str, str], ...] | None = None
    queued_only: bool = False
    was_forked_from: bool | None = None
    is_fork: bool | None = None
    has_parent: bool | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    completed_from_ms: int | None = None
    completed_to_ms: int | None = None
    dequeued_from_ms: int | None = None
    dequeued_to_ms: int | None = None
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
    app_version: str | None = None  # None: the enqueuing process's version
    # "return-existing": a deduplication ID in use yields its holder instead of an error.
    duplication_policy: str | None = None

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
            app_version=row.app_version if self.app_version is None else self.app_version,
        )


@dataclass(frozen=True)
class ScopeLimits:
    """The limits that hold over one scope of a queue: the whole queue, or each partition."""

    concurrency: int | None = None  # running at once, across all processes
    worker_concurrency: int | None = None  # running at once in one process
    rate_limit: int | None = None  # starts ...
    rate_period_sec: float | None = None  # ... in any window of this many seconds

    @property
    def counts_running(self) -> bool:
        """Whether a decision needs the running counts."""
        return self.concurrency is not None or self.worker_concurrency is not None

    @property
    def rate_period_ms(self) -> int | None:
        """The rate limiter's window in milliseconds, if it has one."""
        if self.rate_limit is None or self.rate_period_sec is None:
            return None
        return math.ceil(self.rate_period_sec * 1000)

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.counts_running or self.rate_period_ms is not None


@dataclass(frozen=True)
class QueueRecord:
    """A queue definition as stored in the ``queues`` table (visible to clients and the CLI).

    A queue is partitioned when any ``partition_*`` limit is set (DBOS 3.4): ``concurrency``,
    ``worker_concurrency`` and the rate limit then hold over the whole queue, the
    ``partition_*`` ones over each partition. ``partition_queue`` records that it is
    partitioned; set without any ``partition_*`` limit it is DBOS 2.31's form, under which
    every limit holds per partition.
    """

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    rate_limit: int | None
    rate_period_sec: float | None
    priority_enabled: bool
    partition_queue: bool
    polling_interval_sec: float
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_rate_limit: int | None = None
    partition_rate_period_sec: float | None = None

    @property
    def has_partition_limits(self) -> bool:
        """Whether any ``partition_*`` limit is set."""
        return (
            self.partition_concurrency is not None
            or self.partition_worker_concurrency is not None
            or self.partition_rate_limit is not None
        )

    @property
    def partitioned(self) -> bool:
        """Whether each enqueue names a partition (``queue_partition_key``)."""
        return self.partition_queue or self.has_partition_limits

    @property
    def every_limit_per_partition(self) -> bool:
        """DBOS 2.31's ``partition_queue=True`` without ``partition_*`` limits: ``concurrency``,
        ``worker_concurrency`` and the rate limit hold per partition, nothing over the queue."""
        return self.partition_queue and not self.has_partition_limits

    @property
    def whole_queue_limits(self) -> ScopeLimits:
        """The limits over the whole queue, all partitions together."""
        if self.every_limit_per_partition:
            return ScopeLimits()
        return ScopeLimits(
            self.concurrency, self.worker_concurrency, self.rate_limit, self.rate_period_sec
        )

    @property
    def partition_limits(self) -> ScopeLimits:
        """The limits over each partition alone (none on a queue that is not partitioned)."""
        if self.every_limit_per_partition:
            return ScopeLimits(
                self.concurrency, self.worker_concurrency, self.rate_limit, self.rate_period_sec
            )
        return ScopeLimits(
            self.partition_concurrency,
            self.partition_worker_concurrency,
            self.partition_rate_limit,
            self.partition_rate_period_sec,
        )

    @property
    def is_global(self) -> bool:
        """Whether claims must take turns: a limit that holds across all processes."""
        return any(
            scope.concurrency is not None or scope.rate_limit is not None
            for scope in (self.whole_queue_limits, self.partition_limits)
        )


QUEUE_COLUMNS = tuple(QueueRecord.__dataclass_fields__)
# How `Store.save_queue` treats a queue already stored under the name: replace it always,
# never, or only when the saving process runs the latest application version.
QueueReplace = Literal["always", "never", "if_latest"]


@dataclass(frozen=True)
class Occupancy:
    """What holds a queue (or one partition of it) back, read inside a claim transaction."""

    partition_key: str | None
    running: int  # PENDING workflows of the queue (or partition) in every process
    running_here: int  # those owned by the claiming executor
    recent_starts_ms: tuple[int, ...]  # dequeue times within the rate-limit window, oldest first
    now_ms: int  # the database's clock when the claim read this
    # For one partition of a partitioned queue: the whole queue's occupancy, counting what
    # this claim has taken from the partitions before it. None: this is the whole queue.
    whole: Occupancy | None = None

    def plus_started(self, count: int) -> Occupancy:
        """This occupancy once ``count`` more workflows started here now."""
        return replace(
            self,
            running=self.running + count,
            running_here=self.running_here + count,
            recent_starts_ms=self.recent_starts_ms + (self.now_ms,) * count,
        )


@dataclass(frozen=True)
class QueueClaim:
    """One claim of ready workflows from a queue by one process.

    The queue's limits are those stored for it (every process enforces the same ones);
    ``default`` stands in when nothing is stored, unless ``stored_only`` (a deleted queue
    yields nothing). At most ``batch`` workflows are claimed, and
    only those named in ``names`` whose application version is ``app_version``, or unset
    when ``app_version`` is the latest registered version (or none is registered).
    """

    default: QueueRecord
    executor_id: str
    instance_id: str
    token: int
    names: tuple[str, ...]
    app_version: str
    batch: int
    stored_only: bool = False
    # Added to the database's clock, which judges readiness and rate limits: how far a test
    # moved workflow time ahead (`perdure.clock.offset_ms`); 0 in production.
    clock_offset_ms: int = 0


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
    schedule_id: str  # a fresh one per creation: tells a recreated schedule from the old one
    automatic_backfill: bool = False  # start the ticks missed while no process ran it
    cron_timezone: str | None = None  # the IANA zone of the cron expression; None: UTC
    queue_name: str | None = None  # the queue its runs are enqueued on; None: started directly
    last_fired_at: int | None = None  # epoch ms of the latest tick started


SCHEDULE_COLUMNS = tuple(ScheduleRecord.__dataclass_fields__)
# What `Store.save_schedules` replaces in a schedule that exists: its definition, not its
# identity (ID, creation), its state (paused) or its history (last tick).
SCHEDULE_DEFINITION_COLUMNS = (
    "workflow_name",
    "workflow_class_name",
    "schedule",
    "context",
    "serialization",
    "automatic_backfill",
    "cron_timezone",
    "queue_name",
)


@dataclass(frozen=True)
class VersionRecord:
    """An application version as stored in the ``application_versions`` table (epoch ms).

    The version with the newest ``version_timestamp`` is the latest.
    """

    version_name: str
    version_id: str
    version_timestamp: int
    created_at: int


VERSION_COLUMNS = tuple(VersionRecord.__dataclass_fields__)


@dataclass(frozen=True)
class ExecutorRecord:
    """One launched process as its heartbeats record it (times: the database's clock, ms).

    ``lock_key`` names the lock the process holds while it lives (a PostgreSQL advisory lock,
    or a byte of the lock file next to a SQLite database); ``workflow_names`` the workflows it
    registers (a JSON array; None if unknown: written by an older Perdure); ``silent_ms`` is
    how long ago its last heartbeat was, by the database's clock when read.
    """

    instance_id: str
    executor_id: str
    app_version: str
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int
    lock_key: int | None = None
    workflow_names: str | None = None
    silent_ms: int = 0


EXECUTOR_COLUMNS = tuple(ExecutorRecord.__dataclass_fields__)[:-1]  # silent_ms is computed


class Debounced(Enum):
    """What a call to debounce found under its key (see `Store.debounce_workflow`)."""

    BOUNCED = "bounced"  # the waiting workflow took the call's inputs and start time
    FREE = "free"  # nothing holds the key (any workflow whose window closed gave it up)
    HELD = "held"  # another kind of workflow holds the key: a conflict
    RETRY = "retry"  # a workflow appeared under the key meanwhile (PostgreSQL): call again


@dataclass(frozen=True)
class DebounceRequest:
    """One call to debounce: new inputs and start time for the workflow under a key.

    The key is ``deduplication_id`` on ``queue_name``. ``now_epoch_ms`` judges whether the
    workflow's window is still open; ``timeout_ms`` (if set) closes it that long after the
    workflow was created, and caps its start time there.
    """

    queue_name: str
    deduplication_id: str
    workflow_name: str
    inputs: bytes
    serialization: str
    now_epoch_ms: int
    not_before_epoch_ms: int
    timeout_ms: int | None = None


@dataclass(frozen=True)
class DebounceOutcome:
    """What `Store.debounce_workflow` did: ``workflow_id`` is the bounced or holding one."""

    kind: Debounced
    workflow_id: str | None = None
