"""Run-time schedule options of DBOS 3.4 on both backends: time zones, queues, automatic
backfill, the declarative ``apply_schedules`` and ``trigger_schedule``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from perdure import DBOS, ScheduleInput
from perdure.error import DBOSException
from perdure.scheduling.cron import Cron, tick_workflow_id, trigger_workflow_id
from tests.fixtures.app import wait_until
from tests.integration.system_tables import relaunch, run_sql

UTC = timezone.utc
YEARLY = "0 0 1 1 *"


def now() -> datetime:
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def set_last_fired(db_url: str, name: str, moment: datetime) -> None:
    run_sql(
        db_url,
        "UPDATE {p}schedules SET last_fired_at = :t WHERE schedule_name = :n",
        t=epoch_ms(moment),
        n=name,
    )


def finished(workflow_ids: list[str]) -> bool:
    found = DBOS.list_workflows(workflow_ids=workflow_ids, status="SUCCESS", load_input=False)
    return len(found) == len(workflow_ids)


def started_ids(prefix: str) -> list[str]:
    return sorted(w.workflow_id for w in DBOS.list_workflows(workflow_id_prefix=prefix))


def test_a_time_zone_reads_the_cron_in_local_time(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="standup")
    def standup(scheduled_time: datetime, context: Any) -> str:
        return scheduled_time.isoformat()

    DBOS.create_schedule(
        schedule_name="standup",
        workflow_fn=standup,
        schedule="0 9 * * *",
        cron_timezone="America/New_York",
    )
    assert DBOS.get_schedule("standup")["cron_timezone"] == "America/New_York"  # type: ignore[index]
    # Across the change to daylight saving time: 09:00 in New York both days.
    handles = DBOS.backfill_schedule(
        "standup", datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC)
    )
    local = ["2025-03-08T09:00:00-05:00", "2025-03-09T09:00:00-04:00"]
    assert [h.get_result() for h in handles] == local
    assert [h.workflow_id for h in handles] == [f"sched-standup-{t}" for t in local]

    with pytest.raises(DBOSException, match="Invalid cron_timezone 'Nowhere/Land' for schedule"):
        DBOS.create_schedule(
            schedule_name="bad-zone",
            workflow_fn=standup,
            schedule="0 9 * * *",
            cron_timezone="Nowhere/Land",
        )
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["standup"]


def test_last_fired_at_is_shown_in_the_schedule_time_zone(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow(name="zoned")
    def zoned(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(schedule_name="ny", workflow_fn=zoned, schedule=YEARLY,
                         cron_timezone="America/New_York")  # fmt: skip
    DBOS.create_schedule(schedule_name="utc", workflow_fn=zoned, schedule=YEARLY)
    fired = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    set_last_fired(db_url, "ny", fired)
    set_last_fired(db_url, "utc", fired)
    shown = {s["schedule_name"]: s["last_fired_at"] for s in DBOS.list_schedules()}
    assert shown == {"ny": "2025-07-01T08:00:00-04:00", "utc": "2025-07-01T12:00:00+00:00"}


def test_runs_of_a_schedule_with_a_queue_are_enqueued_there(dbos: type[DBOS]) -> None:
    DBOS.register_queue("scheduled_runs")

    @DBOS.workflow(name="queued_run")
    def queued_run(scheduled_time: datetime, context: Any) -> Any:
        return context

    DBOS.create_schedule(
        schedule_name="every-second",
        workflow_fn=queued_run,
        schedule="* * * * * *",
        context="ctx",
        queue_name="scheduled_runs",
    )
    ticks = wait_until(
        lambda: DBOS.list_workflows(workflow_id_prefix="sched-every-second-", status="SUCCESS"),
        what="a tick run through the queue",
        timeout=15,
    )
    assert all(w.queue_name == "scheduled_runs" for w in ticks)
    assert all(w.schedule_name == "every-second" and w.output == "ctx" for w in ticks)
    DBOS.delete_schedule("every-second")
    with pytest.raises(DBOSException, match="queue 'missing' is not defined"):
        DBOS.create_schedule(
            schedule_name="nowhere", workflow_fn=queued_run, schedule=YEARLY, queue_name="missing"
        )


def test_trigger_runs_the_workflow_once_now(dbos: type[DBOS]) -> None:
    DBOS.register_queue("triggered")

    @DBOS.workflow(name="report")
    def report(scheduled_time: datetime, context: Any) -> tuple[datetime, Any]:
        return scheduled_time, context

    @DBOS.scheduled(YEARLY)
    @DBOS.workflow(name="declared_report")
    def declared_report(scheduled_time: datetime, actual_time: datetime) -> datetime:
        return scheduled_time

    DBOS.create_schedule(schedule_name="report", workflow_fn=report, schedule=YEARLY, context=3)
    before = now() - timedelta(milliseconds=1)  # Perdure's clock reads whole milliseconds
    handle = DBOS.trigger_schedule("report")
    scheduled, context = handle.get_result()
    assert before <= scheduled <= now()
    assert context == 3
    assert handle.workflow_id == trigger_workflow_id("report", scheduled)
    assert handle.workflow_id.startswith("sched-report-trigger-")
    status = handle.get_status()
    assert (status.schedule_name, status.queue_name) == ("report", None)

    DBOS.create_schedule(
        schedule_name="queued-report",
        workflow_fn=report,
        schedule=YEARLY,
        queue_name="triggered",
    )
    queued = DBOS.trigger_schedule("queued-report")
    assert queued.get_result()[1] is None
    assert queued.get_status().queue_name == "triggered"

    assert before <= DBOS.trigger_schedule("declared_report").get_result() <= now()
    with pytest.raises(DBOSException, match="Cannot trigger schedule 'ghost': it does not exist"):
        DBOS.trigger_schedule("ghost")

    @DBOS.workflow(name="triggers_inside")
    def triggers_inside() -> None:
        DBOS.trigger_schedule("report")

    with pytest.raises(DBOSException, match="cannot be called inside a workflow"):
        triggers_inside()


def test_apply_creates_and_redefines_schedules_atomically(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="applied")
    def applied(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(schedule_name="untouched", workflow_fn=applied, schedule=YEARLY)
    first: list[ScheduleInput] = [
        {"schedule_name": "a", "workflow_fn": applied, "schedule": YEARLY, "context": 1},
        {"schedule_name": "b", "workflow_fn": applied, "schedule": "0 0 * * *"},
    ]
    DBOS.apply_schedules(first)
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["a", "b", "untouched"]
    DBOS.pause_schedule("a")
    a_before = DBOS.get_schedule("a")
    others = [DBOS.get_schedule("b"), DBOS.get_schedule("untouched")]
    assert a_before is not None

    redefined: list[ScheduleInput] = [
        {
            "schedule_name": "a",
            "workflow_fn": applied,
            "schedule": "0 0 2 1 *",
            "context": 2,
            "cron_timezone": "Europe/Paris",
            "automatic_backfill": True,
        }
    ]
    DBOS.apply_schedules(redefined)
    a_after = DBOS.get_schedule("a")
    assert a_after == {
        **a_before,
        "schedule": "0 0 2 1 *",
        "context": 2,
        "cron_timezone": "Europe/Paris",
        "automatic_backfill": True,
    }
    assert a_after["status"] == "PAUSED"  # type: ignore[index]
    asyncio.run(DBOS.apply_schedules_async(redefined))  # applying again changes nothing
    assert DBOS.get_schedule("a") == a_after
    assert [DBOS.get_schedule("b"), DBOS.get_schedule("untouched")] == others

    # A bad entry anywhere in the list: nothing is written.
    with pytest.raises(DBOSException, match="Invalid cron schedule"):
        DBOS.apply_schedules([
            {"schedule_name": "c", "workflow_fn": applied, "schedule": YEARLY},
            {"schedule_name": "a", "workflow_fn": applied, "schedule": "every day"},
        ])  # fmt: skip
    with pytest.raises(DBOSException, match="entry 1 is missing required field 'workflow_fn'"):
        DBOS.apply_schedules([first[0], {"schedule_name": "c", "schedule": YEARLY}])  # type: ignore[list-item]
    with pytest.raises(DBOSException, match="'b' appears twice"):
        DBOS.apply_schedules([first[1], first[1]])
    with pytest.raises(DBOSException, match="unknown field"):
        DBOS.apply_schedules([{**first[0], "cron": YEARLY}])  # type: ignore[list-item]
    assert DBOS.get_schedule("c") is None
    assert DBOS.get_schedule("a") == a_after

    @DBOS.workflow(name="applies_inside")
    def applies_inside() -> None:
        DBOS.apply_schedules(first)

    with pytest.raises(DBOSException, match="cannot be called inside a workflow"):
        applies_inside()


def test_listings_show_dbos_keys(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="listed")
    def listed(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(schedule_name="s", workflow_fn=listed, schedule=YEARLY, context=[1])
    [shown] = DBOS.list_schedules(application_name="any-app")
    assert set(shown) == {
        "schedule_id", "schedule_name", "workflow_name", "workflow_class_name", "schedule",
        "status", "context", "last_fired_at", "automatic_backfill", "cron_timezone",
        "queue_name", "application_name", "shard_key", "created_at",
    }  # fmt: skip
    assert (shown["last_fired_at"], shown["queue_name"], shown["application_name"]) == (
        None,
        None,
        None,
    )
    assert shown["automatic_backfill"] is False
    with pytest.raises(DBOSException, match="does not support shard_key"):
        DBOS.create_schedule(schedule_name="t", workflow_fn=listed, schedule=YEARLY, shard_key="k")
    DBOS.delete_schedule("s")
    DBOS.create_schedule(schedule_name="s", workflow_fn=listed, schedule=YEARLY)
    assert DBOS.get_schedule("s")["schedule_id"] != shown["schedule_id"]  # type: ignore[index]


def test_each_tick_started_is_recorded_as_the_last_one(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="ticking")
    def ticking(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(schedule_name="ticking", workflow_fn=ticking, schedule="* * * * * *")

    def last_fired() -> str | None:
        return DBOS.get_schedule("ticking")["last_fired_at"]  # type: ignore[index]

    fired = wait_until(last_fired, what="a tick recorded", timeout=10)
    tick = datetime.fromisoformat(fired)
    assert tick.microsecond == 0
    assert tick_workflow_id("ticking", tick) in started_ids("sched-ticking-")


def test_automatic_backfill_starts_the_ticks_missed_while_down(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow(name="yearly_job")
    def yearly_job(scheduled_time: datetime, context: Any) -> None:
        pass

    for name, backfill in (("catch-up", True), ("no-catch-up", False)):
        DBOS.create_schedule(
            schedule_name=name, workflow_fn=yearly_job, schedule=YEARLY,
            automatic_backfill=backfill,
        )  # fmt: skip
    DBOS.destroy()  # registrations are kept
    last = datetime(2021, 1, 1, tzinfo=UTC)
    set_last_fired(db_url, "catch-up", last)
    set_last_fired(db_url, "no-catch-up", last)
    relaunch(db_url)

    missed = list(Cron(YEARLY).ticks(last + timedelta(seconds=1), now()))
    assert len(missed) >= 4  # 2022 to this year
    expected = [tick_workflow_id("catch-up", t) for t in missed]
    wait_until(lambda: finished(expected), what="the missed ticks to run")
    assert started_ids("sched-catch-up-") == sorted(expected)
    assert started_ids("sched-no-catch-up-") == []
    assert DBOS.get_schedule("catch-up")["last_fired_at"] == missed[-1].isoformat()  # type: ignore[index]


def test_automatic_backfill_starts_the_ticks_missed_while_paused(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow(name="daily_job")
    def daily_job(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(
        schedule_name="daily", workflow_fn=daily_job, schedule="0 0 * * *", automatic_backfill=True
    )
    # Every scheduler pass starts the due tick of this one: a tick started later than a
    # moment shows a pass that read the schedules after it.
    DBOS.create_schedule(schedule_name="metronome", workflow_fn=daily_job, schedule="* * * * * *")
    DBOS.pause_schedule("daily")
    paused_at = now()
    wait_until(
        lambda: any(
            datetime.fromisoformat(w.removeprefix("sched-metronome-")) > paused_at
            for w in started_ids("sched-metronome-")
        ),
        what="a scheduler pass that saw the pause",
    )
    last = (now() - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    set_last_fired(db_url, "daily", last)
    DBOS.resume_schedule("daily")

    missed = list(Cron("0 0 * * *").ticks(last + timedelta(seconds=1), now()))
    assert len(missed) == 3
    expected = [tick_workflow_id("daily", t) for t in missed]
    wait_until(lambda: finished(expected), what="the ticks missed while paused")
    assert started_ids("sched-daily-") == sorted(expected)
