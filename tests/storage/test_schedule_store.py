"""Run-time schedules on both backends: one row per schedule name."""

from __future__ import annotations

from dataclasses import replace

from perdure.storage import Store
from perdure.storage.records import ScheduleRecord


def record(name: str, cron: str = "* * * * *") -> ScheduleRecord:
    return ScheduleRecord(
        schedule_name=name, workflow_name="wf", workflow_class_name=None, schedule=cron,
        context=b'{"k": 1}', serialization="json", paused=False, created_at=1_700_000_000_000,
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
