"""The `ScheduleStore` contract on both backends: one row per schedule name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from perdure.storage import open_store
from perdure.storage.interface import ScheduleRecord, ScheduleStore


@pytest.fixture
def store(db_url: str) -> Iterator[ScheduleStore]:
    opened = open_store(db_url)
    opened.migrate()
    yield cast(ScheduleStore, opened)
    opened.close()


def record(name: str, cron: str = "* * * * *") -> ScheduleRecord:
    return ScheduleRecord(name, "wf", None, cron, b'{"k": 1}', "json", False, 1_700_000_000_000)


def test_schedules_are_stored_once_per_name(store: ScheduleStore) -> None:
    assert store.insert_schedule(record("b"))
    assert store.insert_schedule(record("a"))
    assert not store.insert_schedule(record("a", cron="0 * * * *"))  # the first one stays
    assert store.get_schedule("a") == record("a")
    assert store.get_schedule("missing") is None
    assert [r.schedule_name for r in store.list_schedules()] == ["a", "b"]


def test_pause_resume_and_delete_report_unknown_names(store: ScheduleStore) -> None:
    store.insert_schedule(record("a"))
    assert store.set_schedule_paused("a", True)
    assert store.get_schedule("a").paused  # type: ignore[union-attr]
    assert store.set_schedule_paused("a", False)
    assert not store.get_schedule("a").paused  # type: ignore[union-attr]
    assert not store.set_schedule_paused("ghost", True)
    assert store.delete_schedule("a")
    assert not store.delete_schedule("a")
    assert store.list_schedules() == []
