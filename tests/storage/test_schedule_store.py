"""Run-time schedules on both backends: one row per schedule name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perdure.error import DBOSSystemDatabaseError
from perdure.storage import Store
from perdure.storage.records import ScheduleRecord


def record(name: str, cron: str = "* * * * *") -> ScheduleRecord:
    return ScheduleRecord(
        schedule_name=name, workflow_name="wf", workflow_class_name=None, schedule=cron,
        context=b'{"k": 1}', serialization="json", paused=False, created_at=1_700_000_000_000,
        schedule_id=f"id-{name}",
    )  # fmt: skip


def test_schedules_are_stored_once_per_name(store: Store) -> None:
    assert store.insert_schedule(record("b"))
    assert store.insert_schedule(replace(record("a"), workflow_class_name="C", context=b"\x00"))
    assert not store.insert_schedule(record("a", cron="0 * * * *"))  # the first one stays
    assert store.list_schedules("a") == [
        replace(record("a"), workflow_class_name="C", context=b"\x00")
    ]
    assert store.list_schedules("missing") == []
    assert [r.schedule_name for r in store.list_schedules()] == ["a", "b"]


def test_every_option_is_stored(store: Store) -> None:
    full = replace(
        record("full"), automatic_backfill=True, cron_timezone="America/New_York",
        queue_name="jobs", last_fired_at=1_700_000_001_000,
    )  # fmt: skip
    assert store.insert_schedule(full)
    assert store.list_schedules("full") == [full]


def test_pause_resume_and_delete_report_unknown_names(store: Store) -> None:
    store.insert_schedule(record("a"))
    assert store.set_schedule_paused("a", True)
    assert [r.paused for r in store.list_schedules("a")] == [True]
    assert store.set_schedule_paused("a", False)
    assert [r.paused for r in store.list_schedules("a")] == [False]
    assert not store.set_schedule_paused("ghost", True)
    assert store.delete_schedule("a")
    assert not store.delete_schedule("a")
    assert store.list_schedules() == []


def test_saving_replaces_the_definition_and_keeps_identity_state_and_history(
    store: Store,
) -> None:
    store.insert_schedule(record("kept"))
    store.insert_schedule(record("old"))
    store.set_schedule_paused("old", True)
    store.mark_schedule_fired("old", 1_700_000_005_000)
    redefined = replace(
        record("old", cron="0 * * * *"), schedule_id="new-id", created_at=1, context=b"[]",
        serialization="pickle", workflow_name="wf2", workflow_class_name="K",
        automatic_backfill=True, cron_timezone="Europe/Paris", queue_name="q",
    )  # fmt: skip
    store.save_schedules([redefined, record("new")])
    assert store.list_schedules() == [
        record("kept"),
        record("new"),
        replace(
            redefined,
            schedule_id="id-old",
            created_at=record("old").created_at,
            paused=True,
            last_fired_at=1_700_000_005_000,
        ),
    ]
    store.save_schedules([redefined, record("new")])  # applying again changes nothing
    assert [r.schedule_id for r in store.list_schedules()] == ["id-kept", "id-new", "id-old"]
    store.save_schedules([])


def test_saving_is_all_or_nothing(store: Store) -> None:
    store.insert_schedule(record("a"))
    # The second record cannot be stored (a NULL where the schema needs a value): the first
    # one's new definition is not written either.
    broken = replace(record("b"), workflow_name=None)  # type: ignore[arg-type]
    with pytest.raises(DBOSSystemDatabaseError):
        store.save_schedules([replace(record("a"), schedule="0 0 * * *"), broken])
    assert [(r.schedule_name, r.schedule) for r in store.list_schedules()] == [("a", "* * * * *")]


def test_the_last_tick_only_moves_forward(store: Store) -> None:
    store.insert_schedule(record("a"))
    store.mark_schedule_fired("a", 2_000)
    store.mark_schedule_fired("a", 1_000)  # a slower process reporting an older tick
    assert [r.last_fired_at for r in store.list_schedules("a")] == [2_000]
    store.mark_schedule_fired("a", 3_000)
    store.mark_schedule_fired("ghost", 3_000)  # a schedule deleted meanwhile: nothing to do
    assert [r.last_fired_at for r in store.list_schedules()] == [3_000]
