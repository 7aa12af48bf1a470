"""The storage contract: one `Store` protocol, everything Perdure asks of a system database.

Ownership is data here. Every workflow row carries the owner token of its current claim (a
start, a recovery, a takeover, a dequeue, a resume); every write an execution makes names the
token it holds (in its `StepRow`, or as ``owner_token``) and changes nothing unless the row
still carries it. A write refused that way tells why (`Unrecorded`). A write whose
acknowledgement was lost is retried by the store, and recognised as its own by the token,
never by comparing payloads: a workflow row or a step row written under the same token is
its own. (A write fenced by ``owner_token`` alone, made from inside a step, has no row of its
own to recognise: like the step around it, it happens at least once.)

Errors: connection failures are retried inside the store for as long as they last (or until
the store's wait limit, for clients); every other driver error is raised as
`DBOSSystemDatabaseError`. Unless a docstring says otherwise, each method is one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from perdure.storage.records import (
    BulkDelivery,
    DebounceOutcome,
    DebounceRequest,
    Delivery,
    ExecutorRecord,
    HandedMessage,
    Occupancy,
    OutgoingMessage,
    Payload,
    QueueClaim,
    QueueCounts,
    QueueRecord,
    QueueReplace,
    Rewind,
    ScheduleRecord,
    StartOutcome,
    StepRow,
    StreamEntry,
    VersionRecord,
    WorkflowClaim,
    WorkflowQuery,
    WorkflowRow,
)


class WriteRefused(Exception):
    """A write that records a step was refused; nothing it would have changed was changed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason  # an `Unrecorded` value
        super().__init__(reason)


class Liveness(Protocol):
    """This process's proof of life: a connection of its own that holds its lock and beats.

    The lock (a session-level advisory lock on PostgreSQL, a byte-range lock on a file next
    to a SQLite database) is released by the kernel or the server the moment the process
    dies, which is how other processes see a crash within a second. The heartbeat covers what
    a lock cannot show: a hung process, or a host cut off from the database.
    """

    def beat(self) -> bool:
        """(Re)connect if needed, retake the lock if it is not held, and refresh the heartbeat.

        Returns whether the lock is held. Raises on a connection failure (the caller backs
        off and beats again).
        """

    def close(self) -> None:
        """Release the lock and the connection."""

    def update(self, record: ExecutorRecord) -> None:
        """Beat with ``record`` from now on: the same process (instance and lock key), with
        what changed since launch (the workflows it registers)."""


# Receives each notification: its channel, and the message it carried if authenticated.
NoteHandler = Callable[[str, HandedMessage | None], None]


class Listening(Protocol):
    """A running subscription to the database's notifications."""

    def stop(self) -> None:
        """Stop listening."""


class Store(Protocol):
    """Everything the engine, queues, scheduler, management and clients ask of storage."""

    url: str

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema; concurrent callers serialise."""

    def reset(self) -> None:
        """Drop every table Perdure owns (tests and ``reset_system_database``)."""

    def schema_version(self) -> int | None:
        """The applied migration number, or None if the database has no Perdure schema."""

    def close(self) -> None:
        """Release connections. Calls in flight or made later raise `DBOSSystemDatabaseError`."""

    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> Listening | None:
        """Deliver the database's notifications (PostgreSQL's NOTIFY) to ``on_note``, and call
        ``on_gap`` whenever some may have been missed (a reconnect). None where the backend
        has no notifications (SQLite): waiters poll for other processes' writes there.

        A note is a hint: the channel of what changed ("<kind>|<workflow>|<key>", or "*" for
        everything). Anyone who can connect can send one, so it carries a value only when
        authenticated: a hand-off's message, under a key only readers of Perdure's tables
        hold (else None)."""

    def hold_connection(self) -> AbstractContextManager[None]:
        """While open, this thread's statements reuse one connection (a workflow's steps)."""

    def released(self) -> AbstractContextManager[None]:
        """While open, this thread holds no connection (it is given back): each statement
        borrows one. A workflow waits inside it, so waiting keeps no connection from others."""

    def in_caller_transaction(
        self, connection: Any, *, in_transaction: Callable[[], bool]
    ) -> Store:
        """This store's statements on a caller's DB-API ``connection`` to this same system
        database, inside the transaction the caller commits or rolls back (see
        `perdure.storage.borrowed`); for that transaction only. ``in_transaction`` tells
        whether the driver has begun it (SQLite's driver begins lazily).

        Raises:
            DBOSException: The connection is in autocommit mode, or not on this system
                database (or on one without Perdure's tables).
        """

    # -- workflows -----------------------------------------------------------------------------

    def start_workflow(
        self, row: WorkflowRow, *, parent_step: StepRow | None = None
    ) -> StartOutcome:
        """Insert ``row`` unless its ID exists; return the stored row either way.

        With ``parent_step`` (a child workflow) the parent's step naming the child is recorded
        in the same transaction, only while the parent's execution owns it; otherwise
        `WriteRefused` is raised and nothing is inserted. A retried insert that finds the row
        it inserted itself (same owner token) reports it as created.
        """

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The workflow's row, or None if unknown."""

    def load_steps(self, workflow_id: str, *, position: int | None = None) -> list[StepRow]:
        """The recorded steps of a workflow by position (only the one at ``position`` if set)."""

    def record_step(self, step: StepRow) -> str | None:
        """Checkpoint a step if ``step.owner_token`` still owns its PENDING workflow.

        Returns None when written (or found written by this same owner), else the `Unrecorded`
        reason. Concurrent callers may share a commit (group commit).
        """

    def finish_workflow(
        self,
        workflow_id: str,
        owner_token: int,
        *,
        status: str,
        output: bytes | None = None,
        error: bytes | None = None,
    ) -> str | None:
        """Record the final status (SUCCESS, ERROR, or CANCELLED at a deadline) if the token
        still owns the PENDING workflow. None when recorded, else the `Unrecorded` reason."""

    def claim_workflows(self, claim: WorkflowClaim) -> list[WorkflowRow]:
        """Take over PENDING workflows for a process under ``claim.token`` (see `WorkflowClaim`).

        A compare-and-set: each workflow goes to one claimant however many ask at once.
        Returns the claimed rows.
        """

    def watch_result(self, workflow_id: str, waiter_id: str, *, watching: bool) -> None:
        """Ask for (or withdraw) a notification when the workflow ends: a wait elsewhere."""

    # -- messages, events and streams --------------------------------------------------------

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
        owner_token: int | None = None,
        sender_id: str | None = None,
    ) -> Delivery:
        """Deliver a message once per ``message_id``: hand it to a receiver blocked in ``recv``
        (recording its step, named ``recv_step_name``) when nothing older is queued on the
        topic, else queue it.

        From a workflow, ``step`` (the sender's) is recorded with it; from a step,
        ``owner_token`` of the enclosing workflow ``sender_id`` must still own it. Raises
        `WriteRefused` (sending nothing) when either does not hold.
        """

    def send_messages(
        self,
        messages: Sequence[OutgoingMessage],
        *,
        to_forks: bool = False,
        step: StepRow | None = None,
        owner_token: int | None = None,
        sender_id: str | None = None,
    ) -> BulkDelivery:
        """Queue every message, each once per ``message_id``, in one transaction: all or none.

        Nothing is written if a destination does not exist (`BulkDelivery.missing` names
        them). With ``to_forks``, each message is also queued for every workflow forked from
        its destination, recursively (as found in the transaction), under the ID
        ``"{message_id}>{fork_id}"``. No message is handed off: a receiver blocked in ``recv``
        is notified and takes it from the queue. Fenced like `send_message`; from a workflow,
        ``step`` records the whole send, so a retry or a replay sends nothing more. A few
        statements per message, in one transaction.
        """

    def receive_message(
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        """The message of ``step``'s position: one handed off there already, else the oldest
        queued message of the topic, taken with ``step`` (holding it) recorded atomically.

        With none, registers the workflow as waiting at that position (for senders to hand
        off to) and returns None, recording nothing. Raises `WriteRefused` (taking nothing)
        when the step's owner token no longer owns the workflow.
        """

    def stop_waiting(self, destination_id: str, topic: str | None, function_id: int) -> None:
        """Withdraw the registration of a receiver at ``function_id``.

        When this returns, no sender can start a hand-off to that position, and one that took
        the registration has committed: the position's step shows whether it did.
        """

    def set_event(
        self,
        workflow_id: str,
        key: str,
        value: bytes,
        serialization: str,
        *,
        step: StepRow | None = None,
        owner_token: int | None = None,
        function_id: int | None = None,
    ) -> None:
        """Publish or replace an event; fenced like `send_message` (``step`` or token).

        The value is also kept in the event history under its position: ``step``'s, or
        ``function_id`` (that of the step setting it); without either, no history.
        """

    def get_events(self, workflow_id: str, key: str | None = None) -> dict[str, Payload]:
        """A workflow's events by key (only ``key``'s, if given; empty if not set)."""

    def write_stream(
        self,
        workflow_id: str,
        key: str,
        value: bytes | None,
        serialization: str,
        *,
        closed: bool,
        step: StepRow | None = None,
        owner_token: int | None = None,
        function_id: int | None = None,
    ) -> None:
        """Append to a stream (or close it); fenced like `send_message`.

        The entry records its position: ``step``'s, or ``function_id`` (that of the step
        writing it), else none.
        """

    def read_stream(
        self, workflow_id: str, key: str, from_offset: int, limit: int | None = None
    ) -> list[StreamEntry]:
        """A stream's entries from an offset on (at most ``limit`` of them, if given)."""

    # -- management ----------------------------------------------------------------------------

    def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        """Workflows matching ``query``, ordered by creation time (then ID)."""

    def list_steps(
        self,
        workflow_id: str,
        *,
        with_outputs: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepRow]:
        """A page of a workflow's recorded steps by position (outputs and errors None unless
        ``with_outputs``)."""

    def queue_counts(self) -> list[QueueCounts]:
        """Waiting and running counts of every queue that has unfinished workflows."""

    def cancel_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        """Cancel workflows (and, if asked, all their descendants) that have no outcome yet:
        PENDING, ENQUEUED or dead-lettered ones become CANCELLED, with their end time.

        Returns the IDs it cancelled; unknown, finished and cancelled ones are left alone.
        A running execution's next write is refused (`Unrecorded.CANCELLED`).
        """

    def resume_workflow(
        self, workflow_id: str, *, executor_id: str, instance_id: str, token: int
    ) -> WorkflowRow | None:
        """Give a CANCELLED, dead-lettered, ENQUEUED or PENDING workflow to this process.

        It becomes PENDING under ``token`` (an execution elsewhere is fenced off), leaves its
        queue, its deadline is cleared and its recovery attempts restart. Returns the updated
        row, or None if it does not exist or finished.
        """

    def requeue_workflow(self, workflow_id: str, *, queue_name: str, token: int) -> bool:
        """Put a CANCELLED, dead-lettered, ENQUEUED or PENDING workflow on ``queue_name``.

        It becomes ENQUEUED there as a plain entry (no priority, partition, delay or
        deduplication ID), with no timeout or deadline and its recovery attempts reset, for
        whichever process claims it next. Returns False if it does not exist or finished.
        """

    def delay_workflow(self, workflow_id: str, *, not_before_epoch_ms: int) -> str | None:
        """Set when a workflow waiting on its queue (ENQUEUED) may start.

        Returns its queue's name, or None (nothing changed) if it is not waiting on a queue.
        On PostgreSQL the change wakes the queue's dequeuers in every process.
        """

    def update_workflow_attributes(
        self, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool
    ) -> bool:
        """Replace a workflow's attributes (None: clear them), or with ``merge`` set the given
        top-level keys and keep the others, in one transaction. False if no such workflow."""

    def fork_workflow(
        self,
        row: WorkflowRow,
        *,
        source_id: str,
        start_step: int,
        replacement_children: tuple[tuple[str, str], ...] = (),
    ) -> bool:
        """Insert ``row``, mark the source as forked from, and copy the source's steps before
        ``start_step`` (each ``(old, new)`` of ``replacement_children`` swapping a child
        workflow ID in the copies), atomically.

        Returns False (and changes nothing) if a workflow with ``row``'s ID already exists
        that this same fork (its owner token) did not insert.
        """

    def rewind_workflow(
        self,
        workflow_id: str,
        *,
        start_step: int,
        queue_name: str,
        partition_key: str | None = None,
        app_version: str | None = None,
        token: int,
    ) -> Rewind:
        """Undo a finished workflow's operations from position ``start_step`` on, and enqueue
        it again under its own ID, in one transaction.

        Only a workflow that is SUCCESS, ERROR, CANCELLED or dead-lettered is rewound: a
        compare-and-set on that status and its owner token, which becomes ``token``. Its
        steps from ``start_step`` on are deleted; each event key published from there on gets
        back the last value published before it (or none); stream closes written from there
        on are deleted (entries stay); messages received from there on, and those never
        received, are deleted; its output, error, deadline and recovery attempts are cleared.
        It becomes ENQUEUED on ``queue_name`` (in ``partition_key``'s partition), with
        ``app_version`` if given. A retry finding ``token`` already there reports it rewound.
        Returns what was found (`Rewind`); nothing changes unless it was rewound.
        """

    def delete_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        """Delete workflows (and their descendants if asked) with their rows; the IDs deleted."""

    def delete_finished_batch(self, *, created_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` of the oldest finished workflows created before a time.

        One short transaction; PENDING and ENQUEUED workflows are never deleted. Returns the
        number deleted.
        """

    # -- queues ----------------------------------------------------------------------------------

    def save_queue(
        self,
        record: QueueRecord,
        *,
        replace_existing: QueueReplace = "always",
        app_version: str = "",
    ) -> QueueRecord:
        """Store a queue definition; one already stored under its name is replaced
        ``"always"``, ``"never"``, or ``"if_latest"``: only when ``app_version`` is the latest
        registered application version (or none is registered). Returns the definition
        stored now, in one transaction. On PostgreSQL a write wakes the queue's dequeuers."""

    def list_queues(self, names: tuple[str, ...] | None = None) -> list[QueueRecord]:
        """Stored queue definitions by name (only those named, if given)."""

    def change_queue(
        self, name: str, change: Callable[[QueueRecord], QueueRecord]
    ) -> QueueRecord | None:
        """In one transaction: read the stored definition of queue ``name`` (locking it),
        store ``change(definition)`` instead (a pure function: a retried transaction calls
        it again; an exception it raises leaves the definition as it was), and return it.
        None (nothing written) if no definition is stored under ``name``."""

    def delete_queue(self, name: str) -> bool:
        """Delete a queue's definition (its workflows stay); False if none was stored."""

    def claim_queued(
        self, claim: QueueClaim, admit: Callable[[QueueRecord, Occupancy], int]
    ) -> list[WorkflowRow]:
        """In one transaction: read the queue's stored definition and the occupancy of the
        queue and of each ready partition, ask ``admit`` how many to start (a pure function: a
        retried transaction asks again), and mark that many of its oldest ready workflows (by
        priority, then creation) PENDING for the claiming process under ``claim.token``, at
        most ``claim.batch`` in all. Partitions go oldest ready workflow first; each is asked
        with the whole queue's occupancy as its ``whole``, counting the partitions claimed
        from before it. A claim whose commit was lost is found again by its token. Returns
        the claimed rows.
        """

    def next_ready_at(self, queue_name: str, after_ms: int) -> int | None:
        """The earliest not-before time after ``after_ms`` (the time a claim judged readiness
        by) of the queue's delayed workflows, or None."""

    def debounce_workflow(self, request: DebounceRequest) -> DebounceOutcome:
        """In one transaction: give the workflow waiting under the request's key (a delayed
        workflow of that name holding the deduplication ID on the queue) the request's
        inputs and start time, if its window is open (ENQUEUED, start time and timeout
        ahead); else free the key of one whose window closed (it runs as it is), or report
        who holds it. A claim starting the workflow and a call here take turns on its row.
        """

    # -- schedules -------------------------------------------------------------------------------

    def insert_schedule(self, record: ScheduleRecord) -> bool:
        """Store a new schedule; False (nothing written) if its name is taken."""

    def save_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        """Store each schedule, or replace the definition of the one of that name (keeping
        its ID, creation time, paused state and last tick), all in one transaction."""

    def list_schedules(self, name: str | None = None) -> list[ScheduleRecord]:
        """Stored schedules by name (only ``name``'s, if given)."""

    def set_schedule_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; False if there is no such schedule."""

    def mark_schedule_fired(self, name: str, tick_ms: int) -> None:
        """Record that the schedule's tick at ``tick_ms`` was started, unless a later one was."""

    def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False if there was no such schedule."""

    # -- application versions --------------------------------------------------------------------

    def register_version(self, version_name: str, version_id: str) -> bool:
        """Record a version not seen before as the latest; False (nothing changed) if known."""

    def promote_version(self, version_name: str) -> bool:
        """Make a registered version the latest; False if there is no such version."""

    def list_versions(self, limit: int | None = None) -> list[VersionRecord]:
        """Registered versions, the latest first (only the first ``limit``, if given)."""

    def move_to_version(
        self,
        workflow_id: str,
        *,
        app_version: str,
        queue_name: str,
        expected_token: int,
        token: int,
    ) -> bool:
        """Put a workflow still under ``expected_token`` on application version
        ``app_version``, under ``token`` (any execution of the old claim is fenced off).

        One ENQUEUED stays on its queue, in its place; one PENDING, CANCELLED or dead-lettered
        goes on ``queue_name`` as `requeue_workflow` puts it, for a process of that version to
        claim. A retry finding ``token`` already there reports it moved. Returns False if it
        finished, or another claim took it since ``expected_token`` was read.
        """

    # -- executors -------------------------------------------------------------------------------

    def open_liveness(self, record: ExecutorRecord) -> Liveness:
        """The proof of life of the process ``record`` describes (its lock: ``lock_key``)."""

    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        """Which of other processes' lock ``keys`` nobody holds: those processes are gone."""

    def list_executors(self) -> list[ExecutorRecord]:
        """Every recorded process, most recent heartbeat first, with its silence."""

    def owners_without_heartbeat(self) -> list[str]:
        """Instances that own PENDING workflows but have no heartbeat row (an upgrade from a
        version without heartbeats, or a row deleted by hand): nothing proves them alive."""

    def forget_instance(self, instance_id: str, *, silent_for_ms: int) -> bool:
        """Delete a dead instance's row once it owns no PENDING workflow and is still silent."""
