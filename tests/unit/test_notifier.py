"""The in-process wake-ups: a signal wakes its waiter, and unwatched channels cost nothing."""

from __future__ import annotations

import base64
import threading

from perdure.execution.notifier import Notifier
from perdure.messaging.wakeups import wake_up
from perdure.storage.records import Payload
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


def test_a_hand_off_notification_names_the_receiver_and_carries_its_message() -> None:
    data = b"x" * 200
    encoded = base64.encodebytes(data).decode()  # with line breaks, as PostgreSQL's encode()
    assert wake_up(f"recv|a|b|c|3|json|{encoded}") == ("recv|a|b|c|3", Payload(data, "json"))
    assert wake_up("recv|big|4||") == ("recv|big|4", None)  # too long to carry: read it
    assert wake_up("msg|w|topic") == ("msg|w|topic", None)
