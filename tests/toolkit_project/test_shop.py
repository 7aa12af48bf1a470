"""Tests of the shop, written with perdure.testing only, as a user would write them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import shop

from perdure import DBOS, SetWorkflowID
from perdure.testing import VirtualClock, crash_at


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_checkout_charges_once_when_the_process_dies_after_charging(
    perdure_app: type[DBOS],
) -> None:
    with SetWorkflowID("order-1"), crash_at("charge_card") as crash:
        handle = DBOS.start_workflow(shop.checkout, "order-1")
    assert DBOS.get_workflow_status("order-1").status == "PENDING"
    assert (shop.charges, shop.shipments) == (["order-1"], [])
    crash.recover()
    assert handle.get_result() == "receipt-order-1"
    assert (shop.charges, shop.shipments) == (["order-1"], ["order-1"])


def test_a_charge_not_yet_recorded_is_made_again(perdure_app: type[DBOS]) -> None:
    with crash_at(shop.charge_card, when="before_checkpoint") as crash:
        handle = DBOS.start_workflow(shop.checkout, "order-2")
    crash.recover()
    assert handle.get_result() == "receipt-order-2"
    assert shop.charges == ["order-2", "order-2"]  # at least once: make charges idempotent


def test_a_reminder_a_day_later_takes_no_time(
    perdure_app: type[DBOS], perdure_clock: VirtualClock
) -> None:
    started = time.monotonic()
    handle = DBOS.start_workflow(shop.remind_tomorrow, "ann")
    perdure_clock.wait_for_timer(handle.workflow_id)
    perdure_clock.advance(hours=25)
    assert handle.get_result() == "reminded ann"
    assert time.monotonic() - started < 5


def test_an_approval_expires_after_an_hour(
    perdure_app: type[DBOS], perdure_clock: VirtualClock
) -> None:
    handle = DBOS.start_workflow(shop.wait_for_approval)
    perdure_clock.wait_for_timer(handle.workflow_id)
    perdure_clock.advance(timedelta(hours=1))
    assert handle.get_result() == "expired"


def test_the_report_runs_every_day(perdure_app: type[DBOS], perdure_clock: VirtualClock) -> None:
    perdure_clock.advance(days=2)
    eventually(lambda: len(shop.reports) == 2)
    assert shop.reports[1] - shop.reports[0] == timedelta(days=1)


@pytest.mark.parametrize("order", ["a", "b"])
def test_each_test_has_a_fresh_database(perdure_app: type[DBOS], order: str) -> None:
    assert DBOS.list_workflows() == []
    assert shop.checkout(order) == f"receipt-{order}"


def test_without_the_clock_workflows_see_the_real_time(perdure_app: type[DBOS]) -> None:
    handle = DBOS.start_workflow(shop.checkout, "order-3")
    handle.get_result()
    assert abs(handle.get_status().created_at - time.time() * 1000) < 60_000


def test_with_the_clock_workflows_see_its_time(
    perdure_app: type[DBOS], perdure_clock: VirtualClock
) -> None:
    perdure_clock.advance(days=10)
    handle = DBOS.start_workflow(shop.checkout, "order-4")
    handle.get_result()
    ahead = handle.get_status().created_at - time.time() * 1000
    assert timedelta(days=9) < timedelta(milliseconds=ahead) <= timedelta(days=10)
