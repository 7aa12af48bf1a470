"""The in-process wake-ups: a signal wakes its waiter, and unwatched channels cost nothing."""

from __future__ import annotations

import threading

from perdure.execution.notifier import Notifier


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
