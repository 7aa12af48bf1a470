"""Run-time schedules, which every process's scheduler re-reads."""

from __future__ import annotations

from typing import Any

from perdure.storage.database import Database
from perdure.storage.records import SCHEDULE_COLUMNS, ScheduleRecord
from perdure.storage.sql.rows import blob, marks

_COLS = ", ".join(SCHEDULE_COLUMNS)

INSERT_SCHEDULE = (
    f"INSERT INTO {{p}}schedules ({_COLS}) VALUES ({marks(len(SCHEDULE_COLUMNS))}) "
    "ON CONFLICT (schedule_name) DO NOTHING"
)
SELECT_SCHEDULE = f"SELECT {_COLS} FROM {{p}}schedules WHERE schedule_name = ?"
SELECT_SCHEDULES = f"SELECT {_COLS} FROM {{p}}schedules ORDER BY schedule_name"
SET_PAUSED = "UPDATE {p}schedules SET paused = ? WHERE schedule_name = ?"
DELETE_SCHEDULE = "DELETE FROM {p}schedules WHERE schedule_name = ?"


def _schedule_record(values: tuple[Any, ...]) -> ScheduleRecord:
    name, workflow, class_name, cron, context, serialization, paused, created_at = values
    return ScheduleRecord(
        schedule_name=name,
        workflow_name=workflow,
        workflow_class_name=class_name,
        schedule=cron,
        context=blob(context) or b"",
        serialization=serialization,
        paused=bool(paused),
        created_at=int(created_at),
    )


def insert_schedule(db: Database, record: ScheduleRecord) -> bool:
    """See `Store.insert_schedule`."""
    return db.run(INSERT_SCHEDULE, tuple(getattr(record, c) for c in SCHEDULE_COLUMNS)).changed == 1


def list_schedules(db: Database, name: str | None) -> list[ScheduleRecord]:
    """See `Store.list_schedules`."""
    result = db.run(SELECT_SCHEDULES) if name is None else db.run(SELECT_SCHEDULE, (name,))
    return [_schedule_record(r) for r in result.rows]


def set_schedule_paused(db: Database, name: str, paused: bool) -> bool:
    """See `Store.set_schedule_paused`."""
    return db.run(SET_PAUSED, (paused, name)).changed == 1


def delete_schedule(db: Database, name: str) -> bool:
    """See `Store.delete_schedule`."""
    return db.run(DELETE_SCHEDULE, (name,)).changed == 1
