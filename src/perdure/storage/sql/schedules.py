"""Run-time schedules, which every process's scheduler re-reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perdure.storage.database import Database, Tx
from perdure.storage.records import (
    SCHEDULE_COLUMNS,
    SCHEDULE_DEFINITION_COLUMNS,
    ScheduleRecord,
)
from perdure.storage.sql.rows import blob, marks

_COLS = ", ".join(SCHEDULE_COLUMNS)

INSERT_SCHEDULE = (
    f"INSERT INTO {{p}}schedules ({_COLS}) VALUES ({marks(len(SCHEDULE_COLUMNS))}) "
    "ON CONFLICT (schedule_name) DO NOTHING"
)
# A new schedule, or a new definition of one that exists (which keeps its ID, creation time,
# paused state and last tick: see SCHEDULE_DEFINITION_COLUMNS).
SAVE_SCHEDULE = (
    f"INSERT INTO {{p}}schedules ({_COLS}) VALUES ({marks(len(SCHEDULE_COLUMNS))}) "
    "ON CONFLICT (schedule_name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SCHEDULE_DEFINITION_COLUMNS)
)
SELECT_SCHEDULE = f"SELECT {_COLS} FROM {{p}}schedules WHERE schedule_name = ?"
SELECT_SCHEDULES = f"SELECT {_COLS} FROM {{p}}schedules ORDER BY schedule_name"
SET_PAUSED = "UPDATE {p}schedules SET paused = ? WHERE schedule_name = ?"
DELETE_SCHEDULE = "DELETE FROM {p}schedules WHERE schedule_name = ?"
# Every process starting a tick records it; the latest tick wins whatever the order.
MARK_FIRED = (
    "UPDATE {p}schedules SET last_fired_at = ? WHERE schedule_name = ? "
    "AND (last_fired_at IS NULL OR last_fired_at < ?)"
)


def _schedule_record(values: tuple[Any, ...]) -> ScheduleRecord:
    record = dict(zip(SCHEDULE_COLUMNS, values, strict=True))
    return ScheduleRecord(
        **{
            **record,
            "context": blob(record["context"]) or b"",
            "paused": bool(record["paused"]),  # SQLite stores 0 / 1
            "automatic_backfill": bool(record["automatic_backfill"]),
            "created_at": int(record["created_at"]),
        }
    )


def _params(record: ScheduleRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, c) for c in SCHEDULE_COLUMNS)


def insert_schedule(db: Database, record: ScheduleRecord) -> bool:
    """See `Store.insert_schedule`."""
    return db.run(INSERT_SCHEDULE, _params(record)).changed == 1


def save_schedules(db: Database, records: Sequence[ScheduleRecord]) -> None:
    """See `Store.save_schedules`."""
    if not records:
        return

    def work(tx: Tx) -> None:
        for record in records:
            tx.run(SAVE_SCHEDULE, _params(record))

    db.transaction(work)


def list_schedules(db: Database, name: str | None) -> list[ScheduleRecord]:
    """See `Store.list_schedules`."""
    result = db.run(SELECT_SCHEDULES) if name is None else db.run(SELECT_SCHEDULE, (name,))
    return [_schedule_record(r) for r in result.rows]


def set_schedule_paused(db: Database, name: str, paused: bool) -> bool:
    """See `Store.set_schedule_paused`."""
    return db.run(SET_PAUSED, (paused, name)).changed == 1


def mark_schedule_fired(db: Database, name: str, tick_ms: int) -> None:
    """See `Store.mark_schedule_fired`."""
    db.run(MARK_FIRED, (tick_ms, name, tick_ms))


def delete_schedule(db: Database, name: str) -> bool:
    """See `Store.delete_schedule`."""
    return db.run(DELETE_SCHEDULE, (name,)).changed == 1
