"""Cron expressions (5 fields, or 6 with seconds first) and the ticks they define, over croniter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from croniter import CroniterError, croniter

from perdure.error import DBOSException

_FIELD_COUNTS = (5, 6)
# Ticks fall on whole seconds: starting the iterator this much earlier makes ``start`` itself
# a candidate (croniter yields only times strictly after its start).
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Cron:
    """A validated cron expression, evaluated in UTC.

    Five fields are ``minute hour day month weekday``; six put ``second`` first.
    """

    expression: str

    @classmethod
    def parse(cls, expression: str, *, schedule_name: str) -> Cron:
        """Validate ``expression`` for the schedule ``schedule_name``.

        Raises:
            DBOSException: Not a 5 or 6-field cron expression croniter accepts; the message
                names the schedule and the expression.
        """
        fields = expression.split() if isinstance(expression, str) else []
        problem = None
        if len(fields) not in _FIELD_COUNTS:
            problem = f"5 or 6 fields expected, got {len(fields)}"
        else:
            try:
                croniter.expand(expression, second_at_beginning=True)
            except CroniterError as exc:
                problem = str(exc)
        if problem is not None:
            raise DBOSException(
                f"Invalid cron schedule {expression!r} for schedule {schedule_name!r}: "
                f"{problem}. Use 5 fields (minute hour day month weekday) or 6 with seconds "
                "first, e.g. '*/10 * * * * *' for every 10 seconds."
            )
        return cls(" ".join(fields))

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC."""
        found: datetime = croniter(
            self.expression, moment.astimezone(timezone.utc), second_at_beginning=True
        ).get_next(datetime)
        return found.astimezone(timezone.utc)

    def ticks(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick in ``[start, end)``, oldest first (naive datetimes are taken as UTC)."""
        start, end = as_utc(start), as_utc(end)
        tick = self.next_after(start - _JUST_BEFORE)
        while tick < end:
            yield tick
            tick = self.next_after(tick)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def tick_workflow_id(schedule_name: str, tick: datetime) -> str:
    """The ID of the workflow run for ``tick``: the same in every process, so each tick runs
    once. The format is DBOS Transact's (``sched-<name>-<ISO time>``)."""
    return f"sched-{schedule_name}-{as_utc(tick).isoformat()}"
