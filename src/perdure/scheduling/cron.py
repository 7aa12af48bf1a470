"""Cron expressions (5 fields, or 6 with seconds first) and the ticks they define, over croniter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from perdure.error import DBOSException

_FIELD_COUNTS = (5, 6)
# Ticks fall on whole seconds: starting the iterator this much earlier makes ``start`` itself
# a candidate (croniter yields only times strictly after its start).
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Cron:
    """A validated cron expression, evaluated in UTC or in an IANA time zone.

    Five fields are ``minute hour day month weekday``; six put ``second`` first. Ticks are
    aware datetimes in the expression's zone (``"0 9 * * *"`` in ``America/New_York`` ticks
    at 09:00 New York time, summer and winter).
    """

    expression: str
    zone_name: str | None = None  # an IANA name; None: UTC

    @classmethod
    def parse(
        cls, expression: str, *, schedule_name: str, cron_timezone: str | None = None
    ) -> Cron:
        """Validate ``expression`` (and ``cron_timezone``) for the schedule ``schedule_name``.

        Raises:
            DBOSException: Not a 5 or 6-field cron expression croniter accepts, or not an
                IANA time zone name; the message names the schedule and the value.
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
        if cron_timezone is not None:
            zone_of(cron_timezone, schedule_name=schedule_name)
        return cls(" ".join(fields), cron_timezone)

    @property
    def zone(self) -> tzinfo:
        """The zone the expression is read in."""
        if self.zone_name is None:
            return timezone.utc
        return zone_of(self.zone_name, schedule_name="")

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in the cron's zone."""
        zone = self.zone
        found: datetime = croniter(
            self.expression, moment.astimezone(zone), second_at_beginning=True
        ).get_next(datetime)
        return found.astimezone(zone)

    def ticks(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick in ``[start, end)``, oldest first (naive datetimes are taken as UTC)."""
        start, end = as_utc(start), as_utc(end)
        tick = self.next_after(start - _JUST_BEFORE)
        while tick < end:
            yield tick
            tick = self.next_after(tick)


def zone_of(name: str, *, schedule_name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        DBOSException: No such zone; the message names the schedule and the zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise DBOSException(
            f"Invalid cron_timezone {name!r} for schedule {schedule_name!r}: not an IANA time "
            "zone name. Use a name such as 'America/New_York' or 'Europe/Paris', or None for "
            "UTC."
        ) from exc


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def tick_workflow_id(schedule_name: str, tick: datetime) -> str:
    """The ID of the workflow run for ``tick``: the same in every process, so each tick runs
    once. The format is DBOS Transact's (``sched-<name>-<ISO time>``, the time in the cron's
    zone; naive times are taken as UTC)."""
    if tick.tzinfo is None:
        tick = tick.replace(tzinfo=timezone.utc)
    return f"sched-{schedule_name}-{tick.isoformat()}"


def trigger_workflow_id(schedule_name: str, moment: datetime) -> str:
    """The ID of a run started on demand (``trigger_schedule``) at ``moment``, DBOS's format."""
    return f"sched-{schedule_name}-trigger-{as_utc(moment).isoformat()}"
