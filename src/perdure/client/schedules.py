"""`DBOSClient`'s run-time schedules and application versions, managed from outside.

A client runs no workflows: the runs it asks for (``backfill_schedule``, ``trigger_schedule``)
are enqueued, on the schedule's queue or else the internal queue that every launched process
serves, at the latest application version, as DBOS does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from perdure.client.connected import ClientParts
from perdure.client.handles import ClientWorkflowHandle
from perdure.error import DBOSException
from perdure.management import versions
from perdure.management.versions import VersionInfo
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from perdure.scheduling.cron import Cron, tick_workflow_id, trigger_workflow_id
from perdure.scheduling.definitions import (
    ClientScheduleInput,
    WorkflowSchedule,
    check_entry,
    check_unique_names,
    matching,
    one_or_many,
    public_schedule,
    refuse_unsupported,
    schedule_record,
)
from perdure.scheduling.scheduler import utc_now
from perdure.storage.records import QueuePlacement, ScheduleRecord, WorkflowRow

if TYPE_CHECKING:
    from perdure.queues.enqueue_options import EnqueueOptions

_INPUT_REQUIRED = ("schedule_name", "workflow_name", "schedule")


class ClientSchedules(ClientParts):
    """Schedules and versions of a client: the same calls as `DBOS`'s, on the database."""

    def _handle(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        raise NotImplementedError  # DBOSClient's

    def _queued_row(
        self,
        workflow_id: str,
        name: str,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> WorkflowRow:
        raise NotImplementedError  # DBOSClient's

    # -- schedules ---------------------------------------------------------------------------

    def create_schedule(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any = None,
        workflow_class_name: str | None = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        application_name: str | None = None,
        shard_key: str | None = None,
    ) -> None:
        """Store a schedule of the workflow named ``workflow_name`` (see `DBOS.create_schedule`).

        ``workflow_class_name`` names the class of a classmethod or static method workflow.
        The application's processes that register the workflow run it.

        Raises:
            DBOSException: Invalid cron or zone, the name is taken, or ``application_name`` /
                ``shard_key`` is set (one application per system database, no shards).
        """
        record = self._record(
            schedule_name=schedule_name, workflow_name=workflow_name, schedule=schedule,
            context=context, workflow_class_name=workflow_class_name,
            automatic_backfill=automatic_backfill, cron_timezone=cron_timezone,
            queue_name=queue_name, application_name=application_name, shard_key=shard_key,
        )  # fmt: skip
        if not self._store.insert_schedule(record):
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: the name is already taken. Choose "
                "another name, or delete the existing schedule first (delete_schedule)."
            )

    def apply_schedules(self, schedules: Sequence[ClientScheduleInput]) -> None:
        """Create or replace the definitions of several schedules at once (see
        `DBOS.apply_schedules`: existing ones keep their state, others are left alone)."""
        records = []
        for index, entry in enumerate(schedules):
            check_entry(entry, index, _INPUT_REQUIRED)
            unknown = sorted(set(entry) - set(ClientScheduleInput.__annotations__))
            if unknown:
                raise DBOSException(
                    f"Schedule entry {index} has unknown field(s) {', '.join(unknown)}."
                )
            records.append(
                self._record(
                    schedule_name=entry["schedule_name"],
                    workflow_name=entry["workflow_name"],
                    schedule=entry["schedule"],
                    context=entry.get("context"),
                    workflow_class_name=entry.get("workflow_class_name"),
                    automatic_backfill=entry.get("automatic_backfill", False),
                    cron_timezone=entry.get("cron_timezone"),
                    queue_name=entry.get("queue_name"),
                    application_name=entry.get("application_name"),
                    shard_key=entry.get("shard_key"),
                )
            )
        check_unique_names(r.schedule_name for r in records)
        self._store.save_schedules(records)

    def _record(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any,
        workflow_class_name: str | None,
        automatic_backfill: bool,
        cron_timezone: str | None,
        queue_name: str | None,
        application_name: str | None,
        shard_key: str | None,
    ) -> ScheduleRecord:
        refuse_unsupported(
            f"Schedule {schedule_name!r}", application_name=application_name, shard_key=shard_key
        )
        if not isinstance(workflow_name, str) or not workflow_name:
            raise DBOSException(
                f"Schedule {schedule_name!r}: workflow_name must name a registered workflow, "
                f"not {workflow_name!r}."
            )
        return schedule_record(
            self._payloads, schedule_name=schedule_name, workflow_name=workflow_name,
            workflow_class_name=workflow_class_name, schedule=schedule, context=context,
            automatic_backfill=automatic_backfill, cron_timezone=cron_timezone,
            queue_name=queue_name,
        )  # fmt: skip

    def list_schedules(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
        application_name: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules by name, filtered as `DBOS.list_schedules` does."""
        one_or_many(application_name)  # accepted; it matches every schedule
        found = matching(
            self._store.list_schedules(), status=status, workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix,
        )  # fmt: skip
        return [public_schedule(self._payloads, r) for r in found]

    def get_schedule(self, name: str) -> WorkflowSchedule | None:
        """The stored schedule ``name``, or None."""
        record = next(iter(self._store.list_schedules(name)), None)
        return public_schedule(self._payloads, record) if record is not None else None

    def delete_schedule(self, name: str) -> None:
        """Delete the stored schedule ``name`` (its started workflows are kept).

        Raises:
            DBOSException: No stored schedule has that name.
        """
        if not self._store.delete_schedule(name):
            raise DBOSException(_unknown(name, "delete"))

    def pause_schedule(self, name: str) -> None:
        """Stop the schedule's ticks in every process until resumed (see `DBOS`'s)."""
        if not self._store.set_schedule_paused(name, True):
            raise DBOSException(_unknown(name, "pause"))

    def resume_schedule(self, name: str) -> None:
        """Start a paused schedule's ticks again (see `DBOS.resume_schedule`)."""
        if not self._store.set_schedule_paused(name, False):
            raise DBOSException(_unknown(name, "resume"))

    def backfill_schedule(
        self, schedule_name: str, start: datetime, end: datetime
    ) -> list[ClientWorkflowHandle[Any]]:
        """Enqueue a run for every tick of the schedule in ``[start, end)`` not yet started.

        Ticks keep their usual IDs, so one that already ran is not run again. Naive datetimes
        are taken as UTC.

        Returns:
            A handle per tick in the window, oldest first.
        """
        record = self._stored(schedule_name, "backfill")
        cron = Cron.parse(record.schedule, schedule_name=record.schedule_name,
                          cron_timezone=record.cron_timezone)  # fmt: skip
        version = self._latest_version()
        return [
            self._enqueue_run(record, tick, tick_workflow_id(schedule_name, tick), version)
            for tick in cron.ticks(start, end)
        ]

    def trigger_schedule(self, schedule_name: str) -> ClientWorkflowHandle[Any]:
        """Enqueue one run of the schedule's workflow now (see `DBOS.trigger_schedule`)."""
        record = self._stored(schedule_name, "trigger")
        now = utc_now()
        workflow_id = trigger_workflow_id(schedule_name, now)
        return self._enqueue_run(record, now, workflow_id, self._latest_version())

    def _stored(self, name: str, action: str) -> ScheduleRecord:
        record = next(iter(self._store.list_schedules(name)), None)
        if record is None:
            raise DBOSException(_unknown(name, action))
        return record

    def _latest_version(self) -> str:
        latest = self._store.list_versions(limit=1)
        return latest[0].version_name if latest else ""

    def _enqueue_run(
        self, record: ScheduleRecord, tick: datetime, workflow_id: str, version: str
    ) -> ClientWorkflowHandle[Any]:
        """Enqueue the run of ``tick`` unless a workflow has its ID already."""
        context = self._payloads.decode(
            record.context, record.serialization,
            what=f"context of schedule {record.schedule_name!r}",
        )  # fmt: skip
        queue = record.queue_name or INTERNAL_QUEUE_NAME
        options: EnqueueOptions = {
            "workflow_name": record.workflow_name,
            "queue_name": queue,
            "app_version": version,
        }
        if record.workflow_class_name is not None:
            options["class_name"] = record.workflow_class_name
        row = self._queued_row(workflow_id, record.workflow_name, options, (tick, context), {})
        row = QueuePlacement(queue).place(row)
        row.schedule_name = record.schedule_name
        self._store.start_workflow(row)
        return self._handle(workflow_id)

    async def create_schedule_async(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any = None,
        workflow_class_name: str | None = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        application_name: str | None = None,
        shard_key: str | None = None,
    ) -> None:
        """Async twin of `create_schedule`."""
        await asyncio.to_thread(
            self.create_schedule, schedule_name=schedule_name, workflow_name=workflow_name,
            schedule=schedule, context=context, workflow_class_name=workflow_class_name,
            automatic_backfill=automatic_backfill, cron_timezone=cron_timezone,
            queue_name=queue_name, application_name=application_name, shard_key=shard_key,
        )  # fmt: skip

    async def apply_schedules_async(self, schedules: Sequence[ClientScheduleInput]) -> None:
        """Async twin of `apply_schedules`."""
        await asyncio.to_thread(self.apply_schedules, schedules)

    async def list_schedules_async(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
        application_name: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """Async twin of `list_schedules`."""
        return await asyncio.to_thread(
            self.list_schedules, status=status, workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix, application_name=application_name,
        )  # fmt: skip

    async def get_schedule_async(self, name: str) -> WorkflowSchedule | None:
        """Async twin of `get_schedule`."""
        return await asyncio.to_thread(self.get_schedule, name)

    async def delete_schedule_async(self, name: str) -> None:
        """Async twin of `delete_schedule`."""
        await asyncio.to_thread(self.delete_schedule, name)

    # -- application versions ------------------------------------------------------------------

    def list_application_versions(self) -> list[VersionInfo]:
        """Every registered application version, the latest first."""
        return versions.list_application_versions(self._store)

    def get_latest_application_version(self) -> VersionInfo:
        """The latest application version (raises `DBOSException` if none is registered)."""
        return versions.get_latest_application_version(self._store)

    def set_latest_application_version(
        self, version_name: str, *, application_name: str | None = None
    ) -> None:
        """Make a registered version the latest (see `DBOS.set_latest_application_version`)."""
        versions.set_latest_application_version(
            self._store, version_name, application_name=application_name
        )

    async def list_application_versions_async(self) -> list[VersionInfo]:
        """Async twin of `list_application_versions`."""
        return await asyncio.to_thread(self.list_application_versions)

    async def get_latest_application_version_async(self) -> VersionInfo:
        """Async twin of `get_latest_application_version`."""
        return await asyncio.to_thread(self.get_latest_application_version)

    async def set_latest_application_version_async(
        self, version_name: str, *, application_name: str | None = None
    ) -> None:
        """Async twin of `set_latest_application_version`."""
        await asyncio.to_thread(
            self.set_latest_application_version, version_name, application_name=application_name
        )


def _unknown(name: str, action: str) -> str:
    return (
        f"Cannot {action} schedule {name!r}: it does not exist. list_schedules() shows the "
        "stored ones."
    )
