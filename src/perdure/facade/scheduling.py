"""The scheduling classmethods of `DBOS` (SPEC §6): ``@DBOS.scheduled`` and run-time schedules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution import steps
from perdure.execution.context import current_workflow
from perdure.execution.handles import WorkflowHandle
from perdure.execution.registry import MethodKind, RegisteredWorkflow
from perdure.facade.base import FacadeBase
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from perdure.runtime import Runtime
from perdure.scheduling.cron import Cron, trigger_workflow_id
from perdure.scheduling.definitions import (
    ScheduleInput,
    WorkflowSchedule,
    check_entry,
    check_unique_names,
    matching,
    one_or_many,
    public_schedule,
    refuse_unsupported,
    schedule_record,
)
from perdure.scheduling.scheduler import DeclaredSchedules, Schedule, start_tick, utc_now
from perdure.storage.records import ScheduleRecord
from perdure.storage.store import Store

__all__ = ["ScheduleInput", "SchedulingFacade", "WorkflowSchedule"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# Schedule operations inside a workflow are steps that run once: a failure is recorded as is.
_NO_RETRIES = steps.RetryPolicy()
_INPUT_REQUIRED = ("schedule_name", "workflow_fn", "schedule")


class SchedulingFacade(FacadeBase):
    """Cron schedules: declared on workflows, or created, paused and deleted at run time."""

    # The @DBOS.scheduled workflows of this process; kept across DBOS(...) instances like the
    # workflow registry, and cleared with it.
    _schedules: ClassVar[DeclaredSchedules] = DeclaredSchedules()

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[F], F]:
        """Run the decorated workflow at every tick of ``cron``, once across all processes.

        The workflow takes ``(scheduled_time: datetime, actual_time: datetime)`` (aware UTC).
        Put this decorator above ``@DBOS.workflow()``. Ticks missed while no process ran are
        not replayed (see `backfill_schedule`).

        Args:
            cron: 5 fields (``minute hour day month weekday``), or 6 with seconds first.

        Raises:
            DBOSException: ``cron`` is not a valid 5 or 6-field expression.
            DBOSInitializationError: The function is not a ``@DBOS.workflow()``.
        """

        def decorate(func: F) -> F:
            entry = _workflow_entry(func)
            if entry is None:
                raise DBOSInitializationError(
                    f"@DBOS.scheduled({cron!r}) decorates {getattr(func, '__qualname__', func)!r}"
                    ", which is not a workflow: put @DBOS.scheduled(...) above @DBOS.workflow()."
                )
            parsed = Cron.parse(cron, schedule_name=entry.name)
            cls._schedules.add(Schedule(entry.name, parsed, entry.name))
            return func

        return decorate

    # -- run-time schedules ----------------------------------------------------------------------

    @classmethod
    def create_schedule(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        shard_key: str | None = None,
    ) -> None:
        """Store a schedule that runs ``workflow_fn(scheduled_time, context)`` at every tick.

        Every process of the latest application version that registers the workflow runs the
        schedule (each tick once). Inside a workflow this is a step.

        Args:
            schedule_name: The schedule's unique name.
            workflow_fn: A ``@DBOS.workflow()`` function, classmethod or static method taking
                ``(scheduled_time: datetime, context)``.
            schedule: A cron expression: 5 fields, or 6 with seconds first.
            context: Passed to every run (stored serialized).
            automatic_backfill: At launch (and on resume), start the ticks missed since the
                last one started, as DBOS does.
            cron_timezone: The IANA zone to read the expression in (e.g.
                ``"America/New_York"``); None: UTC. ``scheduled_time`` is in that zone.
            queue_name: Enqueue each run on this queue instead of starting it directly.
            shard_key: DBOS Cloud's; must be None.

        Raises:
            DBOSException: Invalid cron or zone, not a workflow, an undefined queue, or the
                name is taken.
        """
        runtime = cls._require_runtime()
        record = cls._new_record(
            runtime, schedule_name=schedule_name, workflow_fn=workflow_fn, schedule=schedule,
            context=context, automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone, queue_name=queue_name, shard_key=shard_key,
        )  # fmt: skip

        def create() -> None:
            if not _store(runtime).insert_schedule(record):
                raise DBOSException(_taken(schedule_name, "by a stored schedule"))

        _as_step(runtime, "DBOS.createSchedule", create)
        _schedules_changed(runtime)

    @classmethod
    def apply_schedules(cls, schedules: Sequence[ScheduleInput]) -> None:
        """Create the given schedules, or replace the definitions of those that exist, at once.

        The declarative form of `create_schedule`, as in DBOS: all entries are checked
        before anything is written, then written in one transaction. A schedule that exists
        keeps its ID, paused state and last tick; schedules not in the list are left as they
        are (`delete_schedule` removes one). Applying the same list again changes nothing.

        Raises:
            DBOSException: Called inside a workflow, or an entry is invalid (a missing field,
                bad cron or zone, not a workflow, an undefined queue, a name given twice).
        """
        runtime = cls._require_runtime()
        if current_workflow() is not None:
            raise DBOSException(
                "DBOS.apply_schedules cannot be called inside a workflow. Call it at startup "
                "or from outside; inside a workflow, create_schedule is a step."
            )
        records = []
        for index, entry in enumerate(schedules):
            check_entry(entry, index, _INPUT_REQUIRED)
            _refuse_unknown_keys(entry, index, ScheduleInput.__annotations__)
            records.append(
                cls._new_record(
                    runtime,
                    schedule_name=entry["schedule_name"],
                    workflow_fn=entry["workflow_fn"],
                    schedule=entry["schedule"],
                    context=entry.get("context"),
                    automatic_backfill=entry.get("automatic_backfill", False),
                    cron_timezone=entry.get("cron_timezone"),
                    queue_name=entry.get("queue_name"),
                    shard_key=entry.get("shard_key"),
                )
            )
        check_unique_names(r.schedule_name for r in records)
        _store(runtime).save_schedules(records)
        _schedules_changed(runtime)

    @classmethod
    def _new_record(
        cls,
        runtime: Runtime,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any,
        automatic_backfill: bool,
        cron_timezone: str | None,
        queue_name: str | None,
        shard_key: str | None,
    ) -> ScheduleRecord:
        """The record of a new schedule, every argument checked."""
        refuse_unsupported(f"Schedule {schedule_name!r}", shard_key=shard_key)
        entry = _workflow_entry(workflow_fn)
        if entry is None:
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: "
                f"{getattr(workflow_fn, '__qualname__', workflow_fn)!r} is not a workflow. "
                "Decorate it with @DBOS.workflow() first."
            )
        if entry.kind == MethodKind.INSTANCE:
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: Configured instance methods cannot "
                f"be used in schedules, and workflow {entry.name!r} is one; schedule a "
                "function, static method or classmethod."
            )
        if cls._schedules.get(schedule_name) is not None:
            raise DBOSException(_taken(schedule_name, "by a @DBOS.scheduled workflow"))
        if queue_name is not None and not _queue_exists(runtime, queue_name):
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: queue {queue_name!r} is not "
                f"defined. Define it first (Queue({queue_name!r}) or DBOS.register_queue)."
            )
        return schedule_record(
            runtime.engine.payloads,
            schedule_name=schedule_name,
            workflow_name=entry.name,
            workflow_class_name=entry.class_name if entry.kind == MethodKind.CLASS else None,
            schedule=schedule,
            context=context,
            automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone,
            queue_name=queue_name,
        )

    @classmethod
    def list_schedules(
        cls,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
        application_name: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules by name, optionally filtered (each filter: a value or a list).

        Perdure records no application names: every schedule is unclaimed, which DBOS lists
        for every application, so ``application_name`` matches every schedule.
        """
        runtime = cls._require_runtime()
        one_or_many(application_name)  # accepted; it matches every schedule

        def listed() -> list[WorkflowSchedule]:
            found = matching(
                _store(runtime).list_schedules(), status=status, workflow_name=workflow_name,
                schedule_name_prefix=schedule_name_prefix,
            )  # fmt: skip
            return [public_schedule(runtime.engine.payloads, r) for r in found]

        return _as_step(runtime, "DBOS.listSchedules", listed)

    @classmethod
    def get_schedule(cls, name: str) -> WorkflowSchedule | None:
        """The stored schedule ``name``, or None."""
        runtime = cls._require_runtime()

        def get() -> WorkflowSchedule | None:
            record = next(iter(_store(runtime).list_schedules(name)), None)
            return public_schedule(runtime.engine.payloads, record) if record else None

        return _as_step(runtime, "DBOS.getSchedule", get)

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        """Delete the stored schedule ``name``; its started workflows are kept.

        Raises:
            DBOSException: No stored schedule has that name.
        """
        runtime = cls._require_runtime()

        def delete() -> None:
            if not _store(runtime).delete_schedule(name):
                raise DBOSException(_unknown(name, "delete"))

        _as_step(runtime, "DBOS.deleteSchedule", delete)
        _schedules_changed(runtime)

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        """Stop starting ticks of schedule ``name`` in every process, until resumed.

        Raises:
            DBOSException: No stored schedule has that name.
        """
        cls._set_paused(name, paused=True)

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Start ticks of a paused schedule again, from the next one.

        Ticks missed while paused are skipped, unless the schedule has ``automatic_backfill``
        (then they are started, as in DBOS).

        Raises:
            DBOSException: No stored schedule has that name.
        """
        cls._set_paused(name, paused=False)

    @classmethod
    def _set_paused(cls, name: str, *, paused: bool) -> None:
        runtime = cls._require_runtime()

        def update() -> None:
            if not _store(runtime).set_schedule_paused(name, paused):
                raise DBOSException(_unknown(name, "pause" if paused else "resume"))

        _as_step(runtime, "DBOS.pauseSchedule" if paused else "DBOS.resumeSchedule", update)
        _schedules_changed(runtime)

    @classmethod
    def backfill_schedule(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[Any]]:
        """Start the schedule's workflow for every tick in ``[start, end)`` not yet started.

        Ticks keep their usual workflow IDs, so a tick that already ran (or a second backfill
        of the same window) is not run again. Naive datetimes are taken as UTC. Works for
        stored schedules and for ``@DBOS.scheduled`` workflows (named after the workflow).
        Runs start in this process, or are enqueued on the schedule's queue (at the latest
        application version, as in DBOS).

        Returns:
            A handle per tick in the window, oldest first.

        Raises:
            DBOSException: Called inside a workflow, or no schedule has that name.
        """
        runtime = cls._require_runtime()
        engine = runtime.engine
        _refuse_inside_workflow("backfill_schedule", "it starts many workflows at once")
        found = cls._find_schedule(runtime, schedule_name, "backfill")
        version = _latest_version(runtime) if found.queue_name is not None else None
        return [
            WorkflowHandle(engine, start_tick(engine, found, tick, app_version=version))
            for tick in found.cron.ticks(start, end)
        ]

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[Any]:
        """Run the schedule's workflow once now, outside its cron, and return its handle.

        The run's scheduled time is now (aware UTC), and its ID DBOS's
        ``sched-<name>-trigger-<time>``, so it never takes the place of a tick. It starts in
        this process, or is enqueued on the schedule's queue (at the latest application
        version, as in DBOS). Works for ``@DBOS.scheduled`` workflows too.

        Raises:
            DBOSException: Called inside a workflow, or no schedule has that name.
        """
        runtime = cls._require_runtime()
        engine = runtime.engine
        _refuse_inside_workflow("trigger_schedule", "a replay would run it again")
        found = cls._find_schedule(runtime, schedule_name, "trigger")
        version = _latest_version(runtime) if found.queue_name is not None else None
        now = utc_now()
        workflow_id = trigger_workflow_id(schedule_name, now)
        start_tick(engine, found, now, workflow_id=workflow_id, app_version=version)
        return WorkflowHandle(engine, workflow_id)

    @classmethod
    def _find_schedule(cls, runtime: Runtime, name: str, action: str) -> Schedule:
        found = cls._schedules.get(name)
        if found is not None:
            return found
        record = next(iter(_store(runtime).list_schedules(name)), None)
        if record is None:
            raise DBOSException(_unknown(name, action))
        return Schedule.from_record(record)

    # -- async twins -------------------------------------------------------------------------------

    @classmethod
    async def create_schedule_async(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        shard_key: str | None = None,
    ) -> None:
        """Async twin of `create_schedule`."""
        await asyncio.to_thread(
            cls.create_schedule, schedule_name=schedule_name, workflow_fn=workflow_fn,
            schedule=schedule, context=context, automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone, queue_name=queue_name, shard_key=shard_key,
        )  # fmt: skip

    @classmethod
    async def apply_schedules_async(cls, schedules: Sequence[ScheduleInput]) -> None:
        """Async twin of `apply_schedules`."""
        await asyncio.to_thread(cls.apply_schedules, schedules)

    @classmethod
    async def list_schedules_async(
        cls,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
        application_name: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """Async twin of `list_schedules`."""
        return await asyncio.to_thread(
            cls.list_schedules, status=status, workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix, application_name=application_name,
        )  # fmt: skip

    @classmethod
    async def get_schedule_async(cls, name: str) -> WorkflowSchedule | None:
        """Async twin of `get_schedule`."""
        return await asyncio.to_thread(cls.get_schedule, name)

    @classmethod
    async def delete_schedule_async(cls, name: str) -> None:
        """Async twin of `delete_schedule`."""
        await asyncio.to_thread(cls.delete_schedule, name)


def _workflow_entry(func: Any) -> RegisteredWorkflow | None:
    target = getattr(func, "__func__", func)  # a bound classmethod
    return getattr(target, "__perdure_workflow__", None)


def _store(runtime: Runtime) -> Store:
    return runtime.engine.store


def _queue_exists(runtime: Runtime, name: str) -> bool:
    return (
        name == INTERNAL_QUEUE_NAME
        or runtime.queues.get(name) is not None
        or runtime.stored_queue(name) is not None
    )


def _latest_version(runtime: Runtime) -> str | None:
    """The latest application version, the one DBOS enqueues scheduled runs at."""
    latest = _store(runtime).list_versions(limit=1)
    return latest[0].version_name if latest else None


def _schedules_changed(runtime: Runtime) -> None:
    if runtime.scheduler is not None:
        runtime.scheduler.changed()


def _as_step(runtime: Runtime, name: str, operation: Callable[[], T]) -> T:
    """Run ``operation``; inside a workflow as a step, so a replay does not repeat it."""
    result: T = steps.run_step(runtime.engine, operation, (), {}, name=name, policy=_NO_RETRIES)
    return result


def _refuse_inside_workflow(method: str, why: str) -> None:
    if current_workflow() is not None:
        raise DBOSException(
            f"DBOS.{method} cannot be called inside a workflow: {why}. Call it from outside "
            "a workflow."
        )


def _refuse_unknown_keys(entry: Any, index: int, known: Iterable[str]) -> None:
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise DBOSException(
            f"Schedule entry {index} has unknown field(s) {', '.join(unknown)}; the fields "
            f"are {', '.join(known)}."
        )


def _taken(name: str, by: str) -> str:
    return (
        f"Cannot create schedule {name!r}: the name is already taken {by}. Choose another "
        "name, or delete the existing schedule first (DBOS.delete_schedule)."
    )


def _unknown(name: str, action: str) -> str:
    return (
        f"Cannot {action} schedule {name!r}: it does not exist. DBOS.list_schedules() shows "
        "the stored ones."
    )
