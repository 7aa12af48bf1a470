"""The debounce window's arithmetic and the loop that settles a call, without a database."""

from __future__ import annotations

import pytest

from perdure.debouncing.window import (
    MIN_DELAY_SEC,
    Bounce,
    Window,
    check_timeout,
    refuse_owned_options,
    settle,
)
from perdure.error import DBOSException, DBOSQueueDeduplicatedError


def window(period: float = 5.0, timeout: float | None = None) -> Window:
    return Window.create("wf", "q", "k", period_sec=period, timeout_sec=timeout)


def test_the_first_delay_is_the_period_capped_by_the_timeout() -> None:
    assert window(5.0).first_delay_sec() == 5.0
    assert window(5.0, timeout=2.0).first_delay_sec() == 2.0
    assert window(0.0).first_delay_sec() == MIN_DELAY_SEC  # every debounced one has a start
    assert window().deduplication_id == "wf-k"


def test_a_request_is_timed_from_now() -> None:
    request = window(1.5, timeout=2.5).request(b"[]", "json")
    assert request.not_before_epoch_ms - request.now_epoch_ms == 1_500
    assert request.timeout_ms == 2_500
    assert (request.queue_name, request.deduplication_id, request.workflow_name) == (
        "q",
        "wf-k",
        "wf",
    )
    assert window(0.0).request(b"[]", "json").timeout_ms is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "5", True])
def test_bad_periods_and_timeouts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="debounce_period_sec"):
        Window.create("wf", "q", "k", period_sec=bad, timeout_sec=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="debounce_timeout_sec"):
        check_timeout(bad)  # type: ignore[arg-type]


def test_a_zero_or_missing_timeout_is_no_limit() -> None:
    assert check_timeout(None) is None
    assert check_timeout(0) is None
    assert check_timeout(3) == 3.0
    with pytest.raises(ValueError, match="debounce_key"):
        Window.create("wf", "q", "", period_sec=1.0, timeout_sec=None)


def test_each_owned_option_is_refused_by_name() -> None:
    none: dict[str, object] = dict.fromkeys(
        (
            "deduplication_id",
            "delay_seconds",
            "priority",
            "queue_partition_key",
            "duplication_policy",
            "reuse_policy",
        )
    )
    refuse_owned_options(**none)  # type: ignore[arg-type]
    refuse_owned_options(**{**none, "duplication_policy": "reject"})  # type: ignore[arg-type]
    for key, value, match in (
        ("deduplication_id", "d", "deduplication_id"),
        ("delay_seconds", 1.0, "delay"),
        ("priority", 1, "priority"),
        ("queue_partition_key", "p", "partition key"),
        ("duplication_policy", "return-existing", "return-existing"),
        ("reuse_policy", "reject", "reject"),
    ):
        with pytest.raises(DBOSException, match=match):
            refuse_owned_options(**{**none, key: value})  # type: ignore[arg-type]


class Script:
    """Bounce outcomes to hand out in order, and the IDs each enqueue finds holding the key."""

    def __init__(self, bounces: list[Bounce], holders: list[str | None]) -> None:
        self.bounces = bounces
        self.holders = holders
        self.enqueued: list[str] = []

    def bounce(self) -> Bounce:
        return self.bounces.pop(0)

    def enqueue(self, workflow_id: str) -> str:
        self.enqueued.append(workflow_id)
        holder = self.holders.pop(0)
        return workflow_id if holder is None else holder


def test_a_bounce_lands_the_call() -> None:
    script = Script([("bounced", "w1")], [])
    assert settle(window(), bounce=script.bounce, enqueue=script.enqueue, pinned_id=None) == "w1"
    assert script.enqueued == []


def test_a_free_key_starts_a_window_under_the_drawn_or_pinned_id() -> None:
    script = Script([("free", "drawn")], [None])
    assert settle(window(), bounce=script.bounce, enqueue=script.enqueue, pinned_id=None) == (
        "drawn"
    )
    script = Script([("free", "drawn")], [None])
    assert settle(window(), bounce=script.bounce, enqueue=script.enqueue, pinned_id="mine") == (
        "mine"
    )
    assert script.enqueued == ["mine"]


def test_a_window_another_call_started_first_is_bounced() -> None:
    script = Script([("free", "drawn"), ("retry", "theirs"), ("bounced", "theirs")], ["theirs"])
    assert settle(window(), bounce=script.bounce, enqueue=script.enqueue, pinned_id=None) == (
        "theirs"
    )
    assert script.enqueued == ["drawn"]


def test_another_holder_is_a_conflict_naming_it() -> None:
    script = Script([("held", "plain")], [])
    with pytest.raises(DBOSQueueDeduplicatedError) as caught:
        settle(window(), bounce=script.bounce, enqueue=script.enqueue, pinned_id=None)
    assert caught.value.holder_workflow_id == "plain"
    assert (caught.value.queue_name, caught.value.deduplication_id) == ("q", "wf-k")
