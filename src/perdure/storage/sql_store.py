"""`SqlStore`: the `Store` of both backends, over a `Database` that supplies the dialect.

Every method hands over to the domain module that holds its SQL (`perdure.storage.sql`);
what differs between SQLite and PostgreSQL lives in their `Database` and `Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from perdure.clock import now_ms
from perdure.storage.database import Database
from perdure.storage.group_commit import GroupCommit
from perdure.storage.records import (
    BulkDelivery,
    DebounceOutcome,
    DebounceRequest,
    Delivery,
    ExecutorRecord,
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
from perdure.storage.sql import (
    debounces,
    executors,
    management,
    messaging,
    queues,
    rewind,
    schedules,
    versions,
    workflows,
)
from perdure.storage.store import Listening, Liveness, NoteHandler


class SqlStore:
    """The system store over one SQLite file or one PostgreSQL database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.url = database.url
        self._identity: str | None = None  # see `in_caller_transaction`
        # Checkpoints of concurrent workflows share commits; an uncontended one goes alone.
        self._group_commit = GroupCommit(
            lambda step: workflows.write_step(database, step),
            lambda steps: workflows.write_steps(database, steps),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self) -> None:
        self.database.migrate()

    def reset(self) -> None:
        self.database.reset()

    def schema_version(self) -> int | None:
        return self.database.schema_version()

    def close(self) -> None:
        self.database.close()

    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> Listening | None:
        return self.database.listen(on_note, on_gap)

    @contextmanager
    def hold_connection(self) -> Iterator[None]:
        with self.database.hold_connection():
            yield

    @contextmanager
    def released(self) -> Iterator[None]:
        with self.database.released():
            yield

    def in_caller_transaction(
        self, connection: Any, *, in_transaction: Callable[[], bool]
    ) -> SqlStore:
        # Imported here: it loads both backends' modules, which most processes never need.
        from perdure.storage import borrowed  # noqa: PLC0415

        if self._identity is None:  # what names this database never changes: read it once
            self._identity = borrowed.identity(self.database)
        on_caller = borrowed.borrow(
            self.database, connection, in_transaction=in_transaction,
            expected_identity=self._identity,
        )  # fmt: skip
        return SqlStore(on_caller)

    # -- workflows -----------------------------------------------------------------------------

    def start_workflow(
        self, row: WorkflowRow, *, parent_step: StepRow | None = None
    ) -> StartOutcome:
        return workflows.start_workflow(self.database, row, parent_step)

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        return workflows.get_workflow(self.database, workflow_id)

    def load_steps(self, workflow_id: str, *, position: int | None = None) -> list[StepRow]:
        return workflows.load_steps(self.database, workflow_id, position)

    def record_step(self, step: StepRow) -> str | None:
        if self._group_commit.record(step):
            return None
        return workflows.step_refusal(self.database, step)

    def finish_workflow(
        self,
        workflow_id: str,
        owner_token: int,
        *,
        status: str,
        output: bytes | None = None,
        error: bytes | None = None,
    ) -> str | None:
        return workflows.finish_workflow(
            self.database, workflow_id, owner_token, status=status, output=output, error=error
        )

    def claim_workflows(self, claim: WorkflowClaim) -> list[WorkflowRow]:
        return workflows.claim_workflows(self.database, claim)

    def watch_result(self, workflow_id: str, waiter_id: str, *, watching: bool) -> None:
        workflows.watch_result(self.database, workflow_id, waiter_id, watching=watching)

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
        return messaging.send_message(
            self.database,
            message_id=message_id,
            destination_id=destination_id,
            topic=topic,
            message=message,
            serialization=serialization,
            created_at=now_ms(),
            recv_step_name=recv_step_name,
            step=step,
            owner_token=owner_token,
            sender_id=sender_id,
        )

    def send_messages(
        self,
        messages: Sequence[OutgoingMessage],
        *,
        to_forks: bool = False,
        step: StepRow | None = None,
        owner_token: int | None = None,
        sender_id: str | None = None,
    ) -> BulkDelivery:
        return messaging.send_messages(
            self.database, messages, created_at=now_ms(), to_forks=to_forks, step=step,
            owner_token=owner_token, sender_id=sender_id,
        )  # fmt: skip

    def receive_message(
        self, destination_id: str, topic: str | None, step: StepRow
    ) -> Payload | None:
        return messaging.receive_message(self.database, destination_id, topic, step)

    def stop_waiting(self, destination_id: str, topic: str | None, function_id: int) -> None:
        messaging.stop_waiting(self.database, destination_id, topic, function_id)

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
        messaging.set_event(
            self.database, workflow_id, key, value, serialization,
            step=step, owner_token=owner_token, function_id=function_id,
        )  # fmt: skip

    def get_events(self, workflow_id: str, key: str | None = None) -> dict[str, Payload]:
        return messaging.get_events(self.database, workflow_id, key)

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
        messaging.write_stream(
            self.database, workflow_id, key, value, serialization,
            closed=closed, step=step, owner_token=owner_token, function_id=function_id,
        )  # fmt: skip

    def read_stream(
        self, workflow_id: str, key: str, from_offset: int, limit: int | None = None
    ) -> list[StreamEntry]:
        return messaging.read_stream(self.database, workflow_id, key, from_offset, limit)

    # -- management ----------------------------------------------------------------------------

    def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        return management.list_workflows(self.database, query)

    def list_steps(
        self,
        workflow_id: str,
        *,
        with_outputs: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepRow]:
        return management.list_steps(
            self.database, workflow_id, with_outputs=with_outputs, limit=limit, offset=offset
        )

    def queue_counts(self) -> list[QueueCounts]:
        return management.queue_counts(self.database)

    def cancel_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        return management.cancel_workflows(self.database, workflow_ids, with_children=with_children)

    def resume_workflow(
        self, workflow_id: str, *, executor_id: str, instance_id: str, token: int
    ) -> WorkflowRow | None:
        return management.resume_workflow(
            self.database, workflow_id, executor_id=executor_id, instance_id=instance_id,
            token=token,
        )  # fmt: skip

    def requeue_workflow(self, workflow_id: str, *, queue_name: str, token: int) -> bool:
        return management.requeue_workflow(
            self.database, workflow_id, queue_name=queue_name, token=token
        )

    def delay_workflow(self, workflow_id: str, *, not_before_epoch_ms: int) -> str | None:
        return management.delay_workflow(
            self.database, workflow_id, not_before_epoch_ms=not_before_epoch_ms
        )

    def update_workflow_attributes(
        self, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool
    ) -> bool:
        return management.update_attributes(self.database, workflow_id, attributes, merge=merge)

    def fork_workflow(
        self,
        row: WorkflowRow,
        *,
        source_id: str,
        start_step: int,
        replacement_children: tuple[tuple[str, str], ...] = (),
    ) -> bool:
        return management.fork_workflow(
            self.database, row, source_id=source_id, start_step=start_step,
            replacement_children=replacement_children,
        )  # fmt: skip

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
        return rewind.rewind_workflow(
            self.database, workflow_id, start_step=start_step, queue_name=queue_name,
            partition_key=partition_key, app_version=app_version, token=token,
        )  # fmt: skip

    def delete_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        return management.delete_workflows(self.database, workflow_ids, with_children=with_children)

    def delete_finished_batch(self, *, created_before_ms: int, limit: int) -> int:
        return management.delete_finished_batch(
            self.database, created_before_ms=created_before_ms, limit=limit
        )

    # -- queues ----------------------------------------------------------------------------------

    def save_queue(
        self,
        record: QueueRecord,
        *,
        replace_existing: QueueReplace = "always",
        app_version: str = "",
    ) -> QueueRecord:
        return queues.save_queue(
            self.database, record, replace_existing=replace_existing, app_version=app_version
        )

    def list_queues(self, names: tuple[str, ...] | None = None) -> list[QueueRecord]:
        return queues.list_queues(self.database, names)

    def change_queue(
        self, name: str, change: Callable[[QueueRecord], QueueRecord]
    ) -> QueueRecord | None:
        return queues.change_queue(self.database, name, change)

    def delete_queue(self, name: str) -> bool:
        return queues.delete_queue(self.database, name)

    def claim_queued(
        self, claim: QueueClaim, admit: Callable[[QueueRecord, Occupancy], int]
    ) -> list[WorkflowRow]:
        return queues.claim_queued(self.database, claim, admit)

    def next_ready_at(self, queue_name: str, after_ms: int) -> int | None:
        return queues.next_ready_at(self.database, queue_name, after_ms)

    def debounce_workflow(self, request: DebounceRequest) -> DebounceOutcome:
        return debounces.debounce_workflow(self.database, request)

    # -- schedules -------------------------------------------------------------------------------

    def insert_schedule(self, record: ScheduleRecord) -> bool:
        return schedules.insert_schedule(self.database, record)

    def save_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        schedules.save_schedules(self.database, records)

    def list_schedules(self, name: str | None = None) -> list[ScheduleRecord]:
        return schedules.list_schedules(self.database, name)

    def set_schedule_paused(self, name: str, paused: bool) -> bool:
        return schedules.set_schedule_paused(self.database, name, paused)

    def mark_schedule_fired(self, name: str, tick_ms: int) -> None:
        schedules.mark_schedule_fired(self.database, name, tick_ms)

    def delete_schedule(self, name: str) -> bool:
        return schedules.delete_schedule(self.database, name)

    # -- application versions --------------------------------------------------------------------

    def register_version(self, version_name: str, version_id: str) -> bool:
        return versions.register_version(self.database, version_name, version_id)

    def promote_version(self, version_name: str) -> bool:
        return versions.promote_version(self.database, version_name)

    def list_versions(self, limit: int | None = None) -> list[VersionRecord]:
        return versions.list_versions(self.database, limit)

    def move_to_version(
        self,
        workflow_id: str,
        *,
        app_version: str,
        queue_name: str,
        expected_token: int,
        token: int,
    ) -> bool:
        return versions.move_to_version(
            self.database, workflow_id, app_version=app_version, queue_name=queue_name,
            expected_token=expected_token, token=token,
        )  # fmt: skip

    # -- executors -------------------------------------------------------------------------------

    def open_liveness(self, record: ExecutorRecord) -> Liveness:
        return self.database.open_liveness(record)

    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        return self.database.free_lock_keys(keys)

    def list_executors(self) -> list[ExecutorRecord]:
        return executors.list_executors(self.database)

    def owners_without_heartbeat(self) -> list[str]:
        return executors.owners_without_heartbeat(self.database)

    def forget_instance(self, instance_id: str, *, silent_for_ms: int) -> bool:
        return executors.forget_instance(self.database, instance_id, silent_for_ms=silent_for_ms)
