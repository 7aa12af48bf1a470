"""The scheduling classmethods of `DBOS` (SPEC §6): ``@DBOS.scheduled`` and run-time schedules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, TypedDict, TypeVar

from perdure.clock import now_ms
from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution import steps
from perdure.execution.context import current_workflow
from perdure.execution.handles import WorkflowHandle
from perdure.execution.registry import MethodKind, RegisteredWorkflow
from perdure.facade.base import FacadeBase
from perdure.runtime import Runtime
from perdure.scheduling.cron import Cron
from perdure.scheduling.scheduler import DeclaredSchedules, Schedule, start_tick
from perdure.storage.records import ScheduleRecord
from perdure.storage.store import Store

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"
# Schedule operations inside a workflow are steps that run once: a failure is recorded as is.
_NO_RETRIES = steps.RetryPolicy()


class WorkflowSchedule(TypedDict):
    """A run-time schedule, as ``DBOS.list_schedules`` returns it (DBOS Transact's keys)."""

    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str  # the cron expression
    status: str  # "ACTIVE" or "PAUSED"
    context: Any
    created_at: int  # epoch ms


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
    ) -> None:
        """Store a schedule that runs ``workflow_fn(scheduled_time, context)`` at every tick.

        Every process that registers the workflow runs the schedule (each tick once). Inside a
        workflow this is a step.

        Raises:
            DBOSException: Invalid cron, not a workflow, or the name is taken.
        """
        runtime = cls._require_runtime()
        engine = runtime.engine
        entry = _workflow_entry(workflow_fn)
        if entry is None:
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: "
                f"{getattr(workflow_fn, '__qualname__', workflow_fn)!r} is not a workflow. "
                "Decorate it with @DBOS.workflow() first."
            )
        if entry.kind == MethodKind.INSTANCE:
            raise DBOSException(
                f"Cannot create schedule {schedule_name!r}: workflow {entry.name!r} is a method "
                "of configured instances; schedule a function, static method or classmethod."
            )
        cron = Cron.parse(schedule, schedule_name=schedule_name)
        if cls._schedules.get(schedule_name) is not None:
            raise DBOSException(_taken(schedule_name, "by a @DBOS.scheduled workflow"))
        record = ScheduleRecord(
            schedule_name=schedule_name,
            workflow_name=entry.name,
            workflow_class_name=entry.class_name if entry.kind == MethodKind.CLASS else None,
            schedule=cron.expression,
            context=engine.payloads.encode(context, what=f"context of schedule {schedule_name!r}"),
            serialization=engine.payloads.format,
            paused=False,
            created_at=now_ms(),
        )

        def create() -> None:
            if not _store(runtime).insert_schedule(record):
                raise DBOSException(_taken(schedule_name, "by a stored schedule"))

        _as_step(runtime, "DBOS.createSchedule", create)
        _schedules_changed(runtime)

    @classmethod
    def list_schedules(
        cls,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules by name, optionally filtered (each filter: a value or a list)."""
        runtime = cls._require_runtime()
        statuses, workflows = _one_or_many(status), _one_or_many(workflow_name)
        prefixes = _one_or_many(schedule_name_prefix)

        def listed() -> list[WorkflowSchedule]:
            found = [_public(runtime, r) for r in _store(runtime).list_schedules()]
            return [
                s
                for s in found
                if (statuses is None or s["status"] in statuses)
                and (workflows is None or s["workflow_name"] in workflows)
                and (prefixes is None or s["schedule_name"].startswith(prefixes))
            ]

        return _as_step(runtime, "DBOS.listSchedules", listed)

    @classmethod
    def get_schedule(cls, name: str) -> WorkflowSchedule | None:
        """The stored schedule ``name``, or None."""
        runtime = cls._require_runtime()

        def get() -> WorkflowSchedule | None:
            record = next(iter(_store(runtime).list_schedules(name)), None)
            return _public(runtime, record) if record is not None else None

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
        """Start ticks of a paused schedule again, from the next one (missed ones are skipped).

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

        Returns:
            A handle per tick in the window, oldest first.

        Raises:
            DBOSException: Called inside a workflow, or no schedule has that name.
        """
        runtime = cls._require_runtime()
        engine = runtime.engine
        if current_workflow() is not None:
            raise DBOSException(
                "DBOS.backfill_schedule cannot be called inside a workflow: it starts many "
                "workflows at once. Call it from outside, or start a child workflow per tick."
            )
        found = cls._schedules.get(schedule_name)
        if found is None:
            record = next(iter(_store(runtime).list_schedules(schedule_name)), None)
            if record is None:
                raise DBOSException(_unknown(schedule_name, "backfill"))
            found = Schedule.from_record(record)
        return [
            WorkflowHandle(engine, start_tick(engine, found, tick))
            for tick in found.cron.ticks(start, end)
        ]

    # -- async twins -------------------------------------------------------------------------------

    @classmethod
    async def create_schedule_async(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
    ) -> None:
        """Async twin of `create_schedule`."""
        await asyncio.to_thread(
            cls.create_schedule,
            schedule_name=schedule_name,
            workflow_fn=workflow_fn,
            schedule=schedule,
            context=context,
        )

    @classmethod
    async def list_schedules_async(
        cls,
        *,
        status: str | Iterable[str] | None = None,
        workflow_name: str | Iterable[str] | None = None,
        schedule_name_prefix: str | Iterable[str] | None = None,
    ) -> list[WorkflowSchedule]:
        """Async twin of `list_schedules`."""
        return await asyncio.to_thread(
            cls.list_schedules,
            status=status,
            workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix,
        )

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


def _schedules_changed(runtime: Runtime) -> None:
    if runtime.scheduler is not None:
        runtime.scheduler.changed()


def _as_step(runtime: Runtime, name: str, operation: Callable[[], T]) -> T:
    """Run ``operation``; inside a workflow as a step, so a replay does not repeat it."""
    result: T = steps.run_step(runtime.engine, operation, (), {}, name=name, policy=_NO_RETRIES)
    return result


def _public(runtime: Runtime, record: ScheduleRecord) -> WorkflowSchedule:
    context = runtime.engine.payloads.decode(
        record.context, record.serialization, what=f"context of schedule {record.schedule_name!r}"
    )
    return WorkflowSchedule(
        schedule_name=record.schedule_name,
        workflow_name=record.workflow_name,
        workflow_class_name=record.workflow_class_name,
        schedule=record.schedule,
        status=PAUSED if record.paused else ACTIVE,
        context=context,
        created_at=record.created_at,
    )


def _one_or_many(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _taken(name: str, by: str) -> str:
    return (
        f"Cannot create schedule {name!r}: the name is already taken {by}. Choose another "
        "name, or delete the existing schedule first (DBOS.delete_schedule)."
    )


def _unknown(name: str, action: str) -> str:
    return (
        f"Cannot {action} schedule {name!r}: no such schedule. DBOS.list_schedules() shows "
        "the stored ones."
    )
