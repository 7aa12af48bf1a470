"""Cron schedules on both backends: declared and run-time schedules, pause and resume,
backfill, and no catch-up of ticks missed while Perdure was down."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from perdure import DBOS
from perdure.error import DBOSException, DBOSInitializationError
from perdure.scheduling.cron import tick_workflow_id
from tests.fixtures.app import wait_until
from tests.integration.system_tables import relaunch, run_sql

UTC = timezone.utc


class Runs:
    """What scheduled workflows record: (schedule label, scheduled time, second argument)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[tuple[str, datetime, Any]] = []

    def add(self, label: str, scheduled: datetime, second: Any) -> None:
        with self._lock:
            self._runs.append((label, scheduled, second))

    def of(self, label: str) -> list[tuple[datetime, Any]]:
        with self._lock:
            return [(t, s) for lbl, t, s in self._runs if lbl == label]

    def ticks(self, label: str) -> list[datetime]:
        return sorted(t for t, _ in self.of(label))


def now() -> datetime:
    return datetime.now(UTC)


def test_every_second_schedule_runs_each_tick_once(dbos: type[DBOS], db_url: str) -> None:
    runs = Runs()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="every_second")
    def every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        runs.add("every_second", scheduled_time, actual_time)

    wait_until(lambda: len(runs.of("every_second")) >= 3, what="three ticks", timeout=10)
    ticks = runs.ticks("every_second")[:3]
    assert len(set(ticks)) == len(ticks), "a tick ran twice"
    assert [b - a for a, b in itertools.pairwise(ticks)] == [timedelta(seconds=1)] * 2
    for scheduled, actual in runs.of("every_second")[:3]:
        assert scheduled.tzinfo is not None
        assert actual.tzinfo is not None
        assert scheduled.microsecond == 0
        assert timedelta(0) <= actual - scheduled < timedelta(seconds=3)
    rows = run_sql(
        db_url,
        "SELECT workflow_id, status FROM {p}workflow_status WHERE name = 'every_second'",
    )
    ids = Counter(wid for wid, _ in rows)
    assert all(tick_workflow_id("every_second", t) in ids for t in ticks)


def test_decorator_errors_are_clear(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match=r"Invalid cron schedule '\* \* \*' for schedule"):

        @DBOS.scheduled("* * *")
        @DBOS.workflow(name="bad_cron")
        def bad_cron(scheduled_time: datetime, actual_time: datetime) -> None:
            pass

    with pytest.raises(DBOSInitializationError, match=r"above @DBOS.workflow\(\)"):

        @DBOS.workflow(name="wrong_order")
        @DBOS.scheduled("* * * * *")
        def wrong_order(scheduled_time: datetime, actual_time: datetime) -> None:
            pass


def test_run_time_schedules_pause_resume_and_delete(dbos: type[DBOS]) -> None:
    runs = Runs()

    @DBOS.workflow(name="with_context")
    def with_context(scheduled_time: datetime, context: Any) -> None:
        runs.add(context["label"], scheduled_time, context)

    DBOS.create_schedule(
        schedule_name="main",
        workflow_fn=with_context,
        schedule="* * * * * *",
        context={"label": "main", "n": 7},
    )
    DBOS.create_schedule(
        schedule_name="control",
        workflow_fn=with_context,
        schedule="* * * * * *",
        context={"label": "control"},
    )
    [main] = DBOS.list_schedules(schedule_name_prefix="mai")
    assert main["schedule_name"] == "main"
    assert main["workflow_name"] == "with_context"
    assert main["schedule"] == "* * * * * *"
    assert main["status"] == "ACTIVE"
    assert main["context"] == {"label": "main", "n": 7}
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["control", "main"]
    assert DBOS.get_schedule("main") == main
    assert DBOS.get_schedule("missing") is None

    wait_until(lambda: runs.of("main"), what="a tick of main", timeout=10)
    assert all(context == {"label": "main", "n": 7} for _, context in runs.of("main"))

    paused_at = now()
    DBOS.pause_schedule("main")
    assert DBOS.list_schedules(status="PAUSED")[0]["schedule_name"] == "main"
    # The control schedule keeps ticking; main starts nothing after the tick in flight.
    wait_until(
        lambda: any(t > paused_at + timedelta(seconds=2) for t in runs.ticks("control")),
        what="control ticks after the pause",
        timeout=10,
    )
    assert all(t <= paused_at + timedelta(seconds=1) for t in runs.ticks("main"))

    resumed_at = now()  # before: the first tick after the resume is later than this
    DBOS.resume_schedule("main")
    assert DBOS.get_schedule("main")["status"] == "ACTIVE"  # type: ignore[index]
    wait_until(lambda: any(t > resumed_at for t in runs.ticks("main")), what="main after resume")
    # Ticks missed while paused are not replayed.
    missed = [t for t in runs.ticks("main") if paused_at + timedelta(seconds=1) < t <= resumed_at]
    assert missed == []

    DBOS.delete_schedule("main")
    DBOS.delete_schedule("control")
    assert DBOS.list_schedules() == []


def test_run_time_schedule_errors_name_the_schedule(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="target")
    def target(scheduled_time: datetime, context: Any) -> None:
        pass

    def plain(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(schedule_name="nightly", workflow_fn=target, schedule="0 3 * * *")
    with pytest.raises(DBOSException, match="'nightly': the name is already taken"):
        DBOS.create_schedule(schedule_name="nightly", workflow_fn=target, schedule="0 4 * * *")
    with pytest.raises(DBOSException, match="Invalid cron schedule '0 3 \\* \\*' for schedule 'x'"):
        DBOS.create_schedule(schedule_name="x", workflow_fn=target, schedule="0 3 * *")
    with pytest.raises(DBOSException, match=r"plain' is not a workflow"):
        DBOS.create_schedule(schedule_name="y", workflow_fn=plain, schedule="0 3 * * *")
    for action in ("delete", "pause", "resume"):
        with pytest.raises(
            DBOSException, match=f"Cannot {action} schedule 'ghost': it does not exist"
        ):
            getattr(DBOS, f"{action}_schedule")("ghost")
    with pytest.raises(DBOSException, match="Cannot backfill schedule 'ghost'"):
        DBOS.backfill_schedule("ghost", now(), now())
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["nightly"]


def test_backfill_runs_each_tick_of_the_window_once(dbos: type[DBOS]) -> None:
    runs = Runs()

    @DBOS.workflow(name="yearly_report")
    def yearly_report(scheduled_time: datetime, context: Any) -> str:
        runs.add("stored", scheduled_time, context)
        return scheduled_time.isoformat()

    @DBOS.scheduled("0 0 1 1 *")
    @DBOS.workflow(name="yearly_declared")
    def yearly_declared(scheduled_time: datetime, actual_time: datetime) -> None:
        runs.add("declared", scheduled_time, actual_time)

    DBOS.create_schedule(
        schedule_name="yearly", workflow_fn=yearly_report, schedule="0 0 1 1 *", context="ctx"
    )
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)
    handles = DBOS.backfill_schedule("yearly", start, end)
    years = [datetime(y, 1, 1, tzinfo=UTC) for y in (2020, 2021, 2022)]
    assert [h.workflow_id for h in handles] == [tick_workflow_id("yearly", t) for t in years]
    assert [h.get_result() for h in handles] == [t.isoformat() for t in years]
    assert runs.ticks("stored") == years
    assert all(context == "ctx" for _, context in runs.of("stored"))

    again = DBOS.backfill_schedule("yearly", start - timedelta(days=400), end)
    for handle in again:
        handle.get_result()
    assert len(again) == 4  # 2019 is new; the other three already ran
    assert runs.ticks("stored") == [datetime(2019, 1, 1, tzinfo=UTC), *years]

    declared = DBOS.backfill_schedule("yearly_declared", start, datetime(2021, 1, 1))
    [handle] = declared
    handle.get_result()
    assert runs.ticks("declared") == [start]


def test_no_catch_up_after_a_restart(dbos: type[DBOS], db_url: str) -> None:
    runs = Runs()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="heartbeat")
    def heartbeat(scheduled_time: datetime, actual_time: datetime) -> None:
        runs.add("heartbeat", scheduled_time, actual_time)

    wait_until(lambda: runs.of("heartbeat"), what="a first tick", timeout=10)
    DBOS.destroy()  # registrations are kept
    down_at = now()
    # Downtime, not synchronisation: the ticks of these seconds must never run.
    threading.Event().wait(2.5)
    relaunched_at = now()  # before: the first tick after the relaunch is later than this
    relaunch(db_url)
    wait_until(
        lambda: any(t > relaunched_at for t in runs.ticks("heartbeat")),
        what="a tick after the relaunch",
        timeout=10,
    )
    gap = [
        t for t in runs.ticks("heartbeat") if down_at + timedelta(seconds=1) < t <= relaunched_at
    ]
    assert gap == []
    ids = {
        r[0]
        for r in run_sql(
            db_url, "SELECT workflow_id FROM {p}workflow_status WHERE name = 'heartbeat'"
        )
    }
    missed = down_at.replace(microsecond=0) + timedelta(seconds=2)
    assert tick_workflow_id("heartbeat", missed) not in ids


def test_schedule_calls_inside_a_workflow_are_steps(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="noop")
    def noop(scheduled_time: datetime, context: Any) -> None:
        pass

    @DBOS.workflow(name="manager")
    def manager() -> int:
        DBOS.create_schedule(schedule_name="managed", workflow_fn=noop, schedule="0 0 1 1 *")
        DBOS.pause_schedule("managed")
        return len(DBOS.list_schedules())

    handle = DBOS.start_workflow(manager)
    assert handle.get_result() == 1
    steps = [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert steps == ["DBOS.createSchedule", "DBOS.pauseSchedule", "DBOS.listSchedules"]


def test_async_twins(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="async_target")
    async def async_target(scheduled_time: datetime, context: Any) -> None:
        pass

    async def main() -> list[str]:
        await DBOS.create_schedule_async(
            schedule_name="a", workflow_fn=async_target, schedule="0 0 1 1 *"
        )
        names = [s["schedule_name"] for s in await DBOS.list_schedules_async()]
        assert (await DBOS.get_schedule_async("a")) is not None
        await DBOS.delete_schedule_async("a")
        return names

    assert asyncio.run(main()) == ["a"]
    assert DBOS.list_schedules() == []
