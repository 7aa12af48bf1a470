"""The clock seam (`perdure.clock`) with and without a `VirtualClock`: production reads the
machine's clock; an installed virtual clock moves workflow time and wakes the waits on it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from perdure import clock
from perdure.execution.notifier import Notifier
from perdure.testing import VirtualClock
from tests.fixtures.app import wait_until

DAY_MS = 86_400_000


@pytest.fixture
def virtual() -> Iterator[VirtualClock]:
    with VirtualClock() as installed:
        yield installed


def _real_ms() -> int:
    return time.time_ns() // 1_000_000


def test_without_a_virtual_clock_workflow_time_is_the_machines() -> None:
    assert clock.installed() is None
    before = _real_ms()
    now = clock.now_ms()
    assert before <= now <= _real_ms()
    assert clock.offset_ms() == 0
    assert abs(clock.monotonic() - time.monotonic()) < 0.05
    assert abs(clock.deadline_at(now + 1000) - (time.monotonic() + 1.0)) < 0.05
    event = threading.Event()
    started = time.monotonic()
    assert clock.wait_until(event, clock.now_ms() + 50) is False  # a real wait
    assert time.monotonic() - started >= 0.045


def test_a_clock_only_governs_while_installed() -> None:
    spare = VirtualClock(start=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert not spare.installed
    assert spare.now().year == 2030
    assert abs(clock.now_ms() - _real_ms()) < 1000  # created, not installed: no effect
    with spare:
        assert clock.installed() is spare
        assert datetime.fromtimestamp(clock.now_ms() / 1000, tz=timezone.utc).year == 2030
        spare.advance(days=1)
    assert clock.installed() is None
    assert abs(clock.now_ms() - _real_ms()) < 1000  # nothing leaks once uninstalled


def test_one_clock_at_a_time(virtual: VirtualClock) -> None:
    with pytest.raises(RuntimeError, match="Another virtual clock"):
        VirtualClock().install()
    virtual.install()  # installing the same one again is harmless


def test_advancing_moves_every_reading_at_once(virtual: VirtualClock) -> None:
    real, mono = _real_ms(), time.monotonic()
    assert virtual.advance(hours=25, minutes=1) >= datetime.now(timezone.utc) + timedelta(hours=25)
    virtual.advance(timedelta(days=1))
    virtual.advance(0.5)
    ahead_ms = 49 * 3_600_000 + 60_000 + 500
    assert virtual.offset_ms == clock.offset_ms() == ahead_ms
    assert clock.now_ms() - real >= ahead_ms
    assert clock.monotonic() - mono >= ahead_ms / 1000
    with pytest.raises(ValueError, match="aware datetime"):
        virtual.advance_to(datetime(2030, 1, 1))  # naive: refused


def test_a_wait_wakes_when_the_clock_passes_its_time(virtual: VirtualClock) -> None:
    event = threading.Event()
    woke: list[float] = []

    def sleeper() -> None:
        due = clock.now_ms() + DAY_MS
        while clock.now_ms() < due:
            clock.wait_until(event, due)
        woke.append(time.monotonic())

    thread = threading.Thread(target=sleeper)
    thread.start()
    [timer] = wait_until(virtual.timers, what="the sleeper's wait")
    assert timer.workflow_id is None
    assert timer.due is not None
    assert timer.due - virtual.now() > timedelta(hours=23)
    moved = time.monotonic()
    virtual.advance(days=1)
    thread.join(5)
    assert woke
    assert woke[0] - moved < 1.0
    assert virtual.timers() == []


def test_an_event_still_ends_a_wait_under_the_clock(virtual: VirtualClock) -> None:
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert clock.wait_until(event, clock.now_ms() + DAY_MS) is True


def test_an_async_sleep_wakes_when_the_clock_passes_its_time(virtual: VirtualClock) -> None:
    async def main() -> float:
        due = clock.now_ms() + DAY_MS
        started = time.monotonic()
        threading.Timer(0.05, virtual.advance, kwargs={"days": 1}).start()
        while clock.now_ms() < due:
            await clock.sleep_until_async(due, at_most_sec=10.0)
        return time.monotonic() - started

    assert asyncio.run(main()) < 2.0


def test_a_notifier_wait_times_out_when_the_clock_passes_its_deadline(
    virtual: VirtualClock,
) -> None:
    notifier = Notifier(poll_interval_sec=30.0)
    looks: list[int] = []

    def look() -> bool | None:
        looks.append(1)
        return None

    threading.Timer(0.05, virtual.advance, kwargs={"hours": 1}).start()
    started = time.monotonic()
    deadline = clock.monotonic() + 3600
    assert notifier.wait_for(("ch",), look, deadline=deadline) is None
    assert time.monotonic() - started < 2.0
    assert len(looks) >= 2


def test_wait_for_timer_names_what_it_waited_for(virtual: VirtualClock) -> None:
    with pytest.raises(TimeoutError, match="No wait on workflow time by workflow 'w'"):
        virtual.wait_for_timer("w", timeout=0.05)
