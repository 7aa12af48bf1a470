"""The queries of run-time schedules, as a mixin of the SQL store."""

from __future__ import annotations

from typing import Any

from perdure.storage.interface import SCHEDULE_COLUMNS, ScheduleRecord
from perdure.storage.sql_backend import SqlBackend

_COLS = ", ".join(SCHEDULE_COLUMNS)

INSERT_SCHEDULE = (
    f"INSERT INTO {{p}}schedules ({_COLS}) VALUES ({', '.join('?' for _ in SCHEDULE_COLUMNS)}) "
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
        context=bytes(context),
        serialization=serialization,
        paused=bool(paused),
        created_at=int(created_at),
    )


class ScheduleQueries(SqlBackend):
    """The `ScheduleStore` methods: one autocommit statement each."""

    def insert_schedule(self, record: ScheduleRecord) -> bool:
        params = tuple(getattr(record, c) for c in SCHEDULE_COLUMNS)
        return self._autocommit(self._q(INSERT_SCHEDULE), params)[1] == 1

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        rows, _ = self._autocommit(self._q(SELECT_SCHEDULE), (name,))
        return _schedule_record(rows[0]) if rows else None

    def list_schedules(self) -> list[ScheduleRecord]:
        rows, _ = self._autocommit(self._q(SELECT_SCHEDULES), ())
        return [_schedule_record(r) for r in rows]

    def set_schedule_paused(self, name: str, paused: bool) -> bool:
        return self._autocommit(self._q(SET_PAUSED), (paused, name))[1] == 1

    def delete_schedule(self, name: str) -> bool:
        return self._autocommit(self._q(DELETE_SCHEDULE), (name,))[1] == 1
