"""The in-process wake-ups: a signal wakes its waiter, and unwatched channels cost nothing."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from perdure.execution.notifier import Notifier
from perdure.messaging.wakeups import WakeUps
from tests.fixtures.app import wait_until


def test_a_signal_wakes_the_waiter_with_the_new_state() -> None:
    notifier = Notifier(poll_interval_sec=30)
    ready = threading.Event()
    state: list[int] = []

    def check() -> int | None:
        ready.set()
        return state[0] if state else None

    results: list[int | None] = []
    waiter = threading.Thread(
        target=lambda: results.append(notifier.wait_for(("c",), check, deadline=None))
    )
    waiter.start()
    assert ready.wait(5)
    state.append(7)
    notifier.signal("c")
    waiter.join(5)
    assert results == [7]


def test_channels_nobody_waits_for_are_not_kept() -> None:
    notifier = Notifier(poll_interval_sec=1)
    for i in range(1000):
        notifier.signal(f"end|workflow-{i}|")
    assert notifier.wait_for(("x",), lambda: 1, deadline=None) == 1
    assert notifier._counts == {}
    assert notifier._watchers == {}


def test_a_signal_can_carry_a_value_for_a_watcher_only() -> None:
    notifier = Notifier(poll_interval_sec=30)
    notifier.signal("c", "ignored")  # nobody watches "c": nothing is kept
    assert notifier.take("c") is None

    def check() -> str | None:
        return notifier.take("c")  # type: ignore[return-value]

    results: list[str | None] = []
    waiter = threading.Thread(
        target=lambda: results.append(notifier.wait_for(("c",), check, deadline=None))
    )
    waiter.start()
    wait_until(lambda: "c" in notifier._watchers)
    notifier.signal("c", "handed")
    waiter.join(5)
    assert results == ["handed"]
    assert notifier.take("c") is None  # taken once


def test_a_notification_wakes_its_channel_and_strangers_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier(poll_interval_sec=30)
    wake_ups = WakeUps(notifier)
    names = ("recv|a|b|c|3", "msg|w|topic", "end|w|")
    seen = notifier.mark(names)
    wake_ups("recv|a|b|c|3", None)
    assert notifier.take("recv|a|b|c|3") is None  # woken, with nothing to use
    assert notifier._snapshot(names) != seen
    seen = notifier._snapshot(names)
    wake_ups("*", None)  # a note too long for NOTIFY wakes everyone
    assert notifier._snapshot(names) != seen
    with caplog.at_level(logging.WARNING):
        for note in ("nonsense", "", "|||", "x" * 8000, "\x00"):
            wake_ups(note, None)
    assert wake_ups.ignored == 5
    assert len([r for r in caplog.records if "did not send" in r.getMessage()]) == 1


def test_a_wait_can_poll_more_often_than_the_notifier() -> None:
    """``poll_interval_sec`` caps the pause between checks (the rechecks of a wait no signal
    wakes); by the notifier's own cadence the tenth check would come after ~5 s."""
    notifier = Notifier(poll_interval_sec=60)
    checks: list[int] = []

    def check() -> int | None:
        checks.append(1)
        return len(checks) if len(checks) == 10 else None

    deadline = time.monotonic() + 2
    assert notifier.wait_for(("c",), check, deadline=deadline, poll_interval_sec=0.01) == 10
