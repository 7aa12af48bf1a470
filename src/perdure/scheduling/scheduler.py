"""The scheduler loop: one thread per process starts each due tick of every schedule.

Every process running a schedule starts its ticks; the workflow ID of a tick is the same in
all of them (`tick_workflow_id`), so the database lets exactly one start it and the others
find it already recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from perdure import clock
from perdure.clock import now_ms
from perdure.error import DBOSException
from perdure.execution.context import SetWorkflowID
from perdure.execution.notifier import channel
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.logs import get_logger
from perdure.queues.dequeue import queue_channel
from perdure.scheduling.cron import Cron, tick_workflow_id
from perdure.storage.records import QueuePlacement, ScheduleRecord
from perdure.storage.store import Store

logger = get_logger(__name__)

STOP_TIMEOUT_SEC = 5.0
# Wakes the loop: a schedule created, paused, resumed or deleted in this process, or the stop.
SCHEDULES_CHANNEL = channel("schedules", "")
# A loop that fell further behind than this (the database was down, the machine slept) skips
# the older ticks instead of starting them all at once.
CATCH_UP_LIMIT = timedelta(seconds=60)
# Ticks that a test's move of workflow time passed over are not "behind": each starts, as it
# would have while the time passed, up to this many per schedule and move (then the loop
# catches up as above).
JUMP_TICKS_LIMIT = 1000


@dataclass(frozen=True)
class Schedule:
    """What the loop fires: a named cron schedule of a workflow.

    A ``@DBOS.scheduled`` workflow takes ``(scheduled_time, actual_time)``; one created at run
    time takes ``(scheduled_time, context)``, its context stored serialized (``context`` set).
    A run-time schedule may enqueue its runs on ``queue_name`` instead of starting them, and
    with ``automatic_backfill`` start the ticks missed while no process ran it.
    """

    name: str
    cron: Cron
    workflow_name: str
    class_name: str | None = None
    context: bytes | None = None
    serialization: str | None = None
    queue_name: str | None = None
    automatic_backfill: bool = False

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        """The schedule stored in ``record`` (raises if its cron or time zone is invalid)."""
        return cls(
            name=record.schedule_name,
            cron=Cron.parse(
                record.schedule,
                schedule_name=record.schedule_name,
                cron_timezone=record.cron_timezone,
            ),
            workflow_name=record.workflow_name,
            class_name=record.workflow_class_name,
            context=record.context,
            serialization=record.serialization,
            queue_name=record.queue_name,
            automatic_backfill=record.automatic_backfill,
        )

    @property
    def stored(self) -> bool:
        """Whether it is a run-time schedule (a row of the ``schedules`` table)."""
        return self.context is not None


class DeclaredSchedules:
    """The ``@DBOS.scheduled`` workflows of this process (kept across ``DBOS(...)`` instances,
    like the workflow registry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schedules: dict[str, Schedule] = {}

    def add(self, schedule: Schedule) -> None:
        """Declare ``schedule``; declaring a name again replaces it."""
        with self._lock:
            self._schedules[schedule.name] = schedule

    def get(self, name: str) -> Schedule | None:
        with self._lock:
            return self._schedules.get(name)

    def all(self) -> list[Schedule]:
        with self._lock:
            return list(self._schedules.values())

    def clear(self) -> None:
        with self._lock:
            self._schedules.clear()


def utc_now() -> datetime:
    """The current time as an aware UTC datetime, read through the clock seam."""
    return datetime.fromtimestamp(now_ms() / 1000, tz=timezone.utc)


def start_tick(
    engine: WorkflowEngine,
    schedule: Schedule,
    tick: datetime,
    *,
    workflow_id: str | None = None,
    app_version: str | None = None,
) -> str:
    """Start the schedule's workflow for ``tick`` unless some process already did; its ID.

    A schedule with a queue has the run enqueued there (at ``app_version``, else this
    process's version) instead of started here. ``workflow_id`` defaults to the tick's.

    Raises:
        DBOSException: The workflow is not registered here, or the context cannot be read.
    """
    workflow_id = workflow_id or tick_workflow_id(schedule.name, tick)
    entry = engine.registry.find_workflow(workflow_id, schedule.workflow_name)
    bound = engine.registry.bound_target(
        workflow_id, entry, class_name=schedule.class_name, config_name=None
    )
    if schedule.context is not None:
        second = engine.payloads.decode(
            schedule.context,
            schedule.serialization or engine.payloads.format,
            what=f"context of schedule {schedule.name!r}",
        )
    else:
        second = utc_now()  # actual_time
    call = Invocation(entry, bound, (tick, second), {})
    if schedule.queue_name is not None:
        placement = QueuePlacement(schedule.queue_name, app_version=app_version)
        with SetWorkflowID(workflow_id):
            engine.start(call, queued=placement, schedule_name=schedule.name)
        engine.notifier.signal(queue_channel(schedule.queue_name))  # this process's dequeuer
        return workflow_id
    with SetWorkflowID(workflow_id):
        started = engine.start(call, schedule_name=schedule.name)
    if started.active is not None:
        engine.execute_in_background(started.active, call)
    return workflow_id


class Scheduler:
    """Starts the ticks of declared and stored schedules as they come due.

    The first tick of a schedule is the first one after the loop first sees it: ticks missed
    while no process ran it are not replayed (``DBOS.backfill_schedule`` does that on demand),
    except for a stored schedule with ``automatic_backfill``, whose ticks since the last one
    started (``last_fired_at``) are started when the loop first sees it, as DBOS does: at
    launch, and when it is resumed. Only a process of the latest application version starts
    ticks (any process, while no version is registered), so a deployment's new version takes
    over its schedules and ``set_latest_application_version`` hands them back. The
    ``schedules`` table and the latest version are re-read at least every
    ``polling_interval_sec``.
    """

    def __init__(
        self,
        engine: WorkflowEngine,
        store: Store,
        declared: DeclaredSchedules,
        *,
        polling_interval_sec: float,
    ) -> None:
        self._engine = engine
        self._store = store
        self._declared = declared
        self._polling_interval_sec = polling_interval_sec
        self._notifier = engine.notifier
        self._next: dict[Schedule, datetime] = {}  # the next tick to start, per schedule
        self._offset_seen_ms = clock.offset_ms()  # moves of workflow time already accounted
        self._unrunnable: set[str] = set()  # schedules already reported as failing here
        self._superseded_by: str | None = None  # the latest version, while it is not ours
        self._stop = threading.Event()
        # Set once the loop has looked at the schedules (and started the due ticks) once.
        self.first_pass_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perdure-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop starting ticks (started workflows keep running); wait for the thread."""
        self._stop.set()
        self._notifier.signal(SCHEDULES_CHANNEL)
        if self._thread.is_alive():
            self._thread.join(timeout_sec)

    def changed(self) -> None:
        """Re-read the schedules now (one was created, changed, paused, resumed or deleted
        here, or the latest version changed)."""
        self._notifier.signal(SCHEDULES_CHANNEL)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            # Ticks follow workflow time: a test moving it wakes the loop.
            with clock.watching(self._notifier.signal_all):
                self._pass_and_wait()

    def _pass_and_wait(self) -> None:
        """Start the due ticks, then wait until the next one (or a change, or a poll)."""
        names = (SCHEDULES_CHANNEL,)
        seen = self._notifier.mark(names)  # before the pass: no signal is lost
        try:
            wake_at = self._pass()
        except Exception:
            logger.exception("Scheduler pass failed; retrying after the polling interval")
            wake_at = None
        self.first_pass_done.set()
        wait = self._polling_interval_sec
        if wake_at is not None:
            wait = min(wait, max(0.0, (wake_at - utc_now()).total_seconds()))
        self._notifier.wait_changed(names, seen, wait)

    def _pass(self) -> datetime | None:
        """Start every due tick; return when the next one is due."""
        if not self._runs_latest_version():
            self._next = {}  # when this version is the latest again, it starts afresh
            return None
        now, jumped = self._now_and_jump()
        current = self._current()
        running = {s.name for s in self._next}
        upcoming: dict[Schedule, datetime] = {}
        # New, resumed or changed schedules start after now; removed ones are forgotten.
        for schedule, last_fired in current:
            tick = self._next.get(schedule)
            if tick is None:
                # A schedule first seen here (at launch, or resumed) resumes after its last
                # tick if asked to; a changed definition of a running one is no gap.
                if schedule.automatic_backfill and schedule.name not in running:
                    self._backfill(schedule, last_fired, now)
                tick = schedule.cron.next_after(now)
            upcoming[schedule] = tick
        self._next = upcoming
        for schedule, first in upcoming.items():
            self._next[schedule] = self._start_due(schedule, first, now, jumped)
        return min(self._next.values(), default=None)

    def _now_and_jump(self) -> tuple[datetime, timedelta]:
        """The time now, and how far a test moved workflow time since the last pass (0 in
        production): read together, so a move is counted in both or in neither."""
        while True:
            offset = clock.offset_ms()
            now = utc_now()
            if clock.offset_ms() == offset:
                break
        jumped = max(0, offset - self._offset_seen_ms)
        self._offset_seen_ms = offset
        return now, timedelta(milliseconds=jumped)

    def _start_due(
        self, schedule: Schedule, tick: datetime, now: datetime, jumped: timedelta
    ) -> datetime:
        """Start the schedule's ticks from ``tick`` up to ``now``; the next one after them.

        Ticks further behind than `CATCH_UP_LIMIT` are skipped (the loop fell behind), but for
        those a move of workflow time passed over (``jumped``), up to `JUMP_TICKS_LIMIT`.
        """
        recent = now - CATCH_UP_LIMIT
        started = 0
        while tick <= now and not self._stop.is_set():
            if tick < recent and (tick < recent - jumped or started >= JUMP_TICKS_LIMIT):
                logger.warning(
                    "Schedule %r fell behind: its ticks from %s to %s are skipped",
                    schedule.name,
                    tick.isoformat(),
                    recent.isoformat(),
                )
                tick = schedule.cron.next_after(recent)
                continue
            self._fire(schedule, tick)
            started += 1
            tick = schedule.cron.next_after(tick)
        return tick

    def _runs_latest_version(self) -> bool:
        """Whether this process runs the latest application version (or none is registered)."""
        latest = self._store.list_versions(limit=1)
        superseded_by = None
        if latest and latest[0].version_name != self._engine.app_version:
            superseded_by = latest[0].version_name
        if superseded_by != self._superseded_by:
            if superseded_by is not None:
                logger.info(
                    "Application version %r is not the latest (%r is): this process leaves "
                    "schedule ticks to processes of the latest version",
                    self._engine.app_version,
                    superseded_by,
                )
            self._superseded_by = superseded_by
        return superseded_by is None

    def _current(self) -> list[tuple[Schedule, int | None]]:
        """The declared schedules and the stored ones not paused, with their last tick."""
        schedules: list[tuple[Schedule, int | None]] = [(s, None) for s in self._declared.all()]
        for record in self._store.list_schedules():
            if record.paused:
                continue
            try:
                schedules.append((Schedule.from_record(record), record.last_fired_at))
            except DBOSException as exc:
                self._report(record.schedule_name, exc)
        return schedules

    def _backfill(self, schedule: Schedule, last_fired_ms: int | None, now: datetime) -> None:
        """Start the ticks after the last one started and before ``now``, oldest first (none
        if no tick was ever started)."""
        if last_fired_ms is None:
            return
        after = datetime.fromtimestamp((last_fired_ms + 1) / 1000, tz=timezone.utc)
        missed = list(schedule.cron.ticks(after, now))
        if missed:
            logger.info(
                "Schedule %r: starting %d tick(s) missed since %s (automatic_backfill)",
                schedule.name,
                len(missed),
                missed[0].isoformat(),
            )
        for tick in missed:
            if self._stop.is_set():
                return
            self._fire(schedule, tick)

    def _fire(self, schedule: Schedule, tick: datetime) -> None:
        try:
            start_tick(self._engine, schedule, tick)
        except DBOSException as exc:
            # Another process that registers the workflow may start this tick.
            self._report(schedule.name, exc)
            return
        self._unrunnable.discard(schedule.name)
        if schedule.stored:
            self._store.mark_schedule_fired(schedule.name, round(tick.timestamp() * 1000))

    def _report(self, name: str, exc: DBOSException) -> None:
        """Log a schedule this process cannot run, once until it runs again."""
        if name not in self._unrunnable:
            self._unrunnable.add(name)
            logger.error("Schedule %r cannot run in this process: %s", name, exc)
