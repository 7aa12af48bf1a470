"""Cron expressions: 5 or 6 fields (seconds first), clear errors, tick arithmetic, tick IDs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from perdure.error import DBOSException
from perdure.scheduling.cron import Cron, tick_workflow_id, trigger_workflow_id

UTC = timezone.utc


def at(year: int, month: int, day: int, *hms: int) -> datetime:
    """An aware UTC datetime; ``hms`` are the optional hour, minute and second."""
    return datetime(year, month, day, *hms, tzinfo=UTC)


def test_five_fields_are_minute_first() -> None:
    cron = Cron.parse("*/15 * * * *", schedule_name="quarterly")
    assert cron.next_after(at(2024, 1, 1, 10, 7, 30)) == at(2024, 1, 1, 10, 15)


def test_six_fields_put_seconds_first() -> None:
    cron = Cron.parse("*/10 * * * * *", schedule_name="often")
    assert cron.next_after(at(2024, 1, 1, 0, 0, 3)) == at(2024, 1, 1, 0, 0, 10)
    # "5 30 * * * *" is second 5 of minute 30 of every hour, not minute 5.
    hourly = Cron.parse("5 30 * * * *", schedule_name="hourly")
    assert hourly.next_after(at(2024, 1, 1, 0, 0)) == at(2024, 1, 1, 0, 30, 5)


def test_next_after_is_strictly_after_and_in_utc() -> None:
    cron = Cron.parse("* * * * * *", schedule_name="every-second")
    assert cron.next_after(at(2024, 1, 1, 0, 0, 10)) == at(2024, 1, 1, 0, 0, 11)
    paris = timezone(timedelta(hours=1))
    found = cron.next_after(datetime(2024, 1, 1, 1, 0, 0, 500_000, tzinfo=paris))
    assert found == at(2024, 1, 1, 0, 0, 1)
    assert found.tzinfo == UTC


def test_ticks_cover_start_inclusive_end_exclusive() -> None:
    cron = Cron.parse("0 0 1 1 *", schedule_name="yearly")
    assert list(cron.ticks(at(2020, 1, 1), at(2023, 1, 1))) == [
        at(2020, 1, 1),
        at(2021, 1, 1),
        at(2022, 1, 1),
    ]
    assert list(cron.ticks(at(2020, 1, 1, 0, 0, 1), at(2020, 6, 1))) == []
    # Naive datetimes are UTC.
    assert list(cron.ticks(datetime(2021, 1, 1), datetime(2021, 1, 2))) == [at(2021, 1, 1)]


def test_whitespace_is_normalised() -> None:
    assert Cron.parse("  */5   * * * * * ", schedule_name="s").expression == "*/5 * * * * *"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "got 4"),
        ("* * * * * * *", "got 7"),
        ("@hourly", "got 1"),
        ("", "got 0"),
        ("61 * * * * *", "out of range"),
        ("*/0 * * * *", "step '0'"),
        ("a b c d e", "not acceptable"),
    ],
)
def test_bad_expressions_are_rejected_naming_schedule_and_expression(
    expression: str, reason: str
) -> None:
    with pytest.raises(DBOSException) as raised:
        Cron.parse(expression, schedule_name="nightly-report")
    message = str(raised.value)
    assert "'nightly-report'" in message
    assert repr(expression) in message
    assert reason in message


def test_tick_workflow_ids_name_schedule_and_time_in_the_crons_zone() -> None:
    tick = at(2024, 5, 1, 12, 0, 30)
    assert tick_workflow_id("report", tick) == "sched-report-2024-05-01T12:00:30+00:00"
    assert tick_workflow_id("report", tick.replace(tzinfo=None)) == tick_workflow_id("report", tick)
    # A schedule in a time zone names its ticks by their local time, as DBOS does.
    new_york = tick.astimezone(ZoneInfo("America/New_York"))
    assert tick_workflow_id("report", new_york) == "sched-report-2024-05-01T08:00:30-04:00"
    assert trigger_workflow_id("report", new_york) == (
        "sched-report-trigger-2024-05-01T12:00:30+00:00"
    )


def test_a_time_zone_keeps_local_times_across_daylight_saving_changes() -> None:
    cron = Cron.parse("0 9 * * *", schedule_name="standup", cron_timezone="America/New_York")
    ticks = list(cron.ticks(at(2025, 3, 8), at(2025, 3, 10)))
    assert [t.isoformat() for t in ticks] == [
        "2025-03-08T09:00:00-05:00",
        "2025-03-09T09:00:00-04:00",  # the day clocks move forward
    ]
    assert [t.astimezone(UTC).hour for t in ticks] == [14, 13]
    assert cron.next_after(at(2025, 7, 1, 13, 0, 1)) == at(2025, 7, 2, 13)


def test_an_unknown_time_zone_is_rejected_naming_schedule_and_zone() -> None:
    for zone in ("Mars/Olympus_Mons", "", "../etc/passwd"):
        with pytest.raises(DBOSException, match=f"Invalid cron_timezone {zone!r} for schedule"):
            Cron.parse("0 9 * * *", schedule_name="standup", cron_timezone=zone)
