"""Durable sleep, workflow timeouts and cancellation on both backends."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from perdure import DBOS, SetWorkflowID, SetWorkflowTimeout
from perdure.error import DBOSAwaitedWorkflowCancelledError
from tests.fixtures.app import wait_until
from tests.integration.system_tables import mark_pending, relaunch, step_rows


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


def test_sleep_records_a_step_and_sleeps(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.step()
    def before() -> int:
        return 1

    @DBOS.workflow()
    def napper() -> float:
        before()
        started = time.monotonic()
        DBOS.sleep(0.2)
        return time.monotonic() - started

    with SetWorkflowID("nap"):
        slept = napper()
    assert 0.19 <= slept < 2.0
    rows = step_rows(db_url, "nap")
    assert [(r.function_id, r.function_name) for r in rows][1:] == [(2, "DBOS.sleep")]
    # The checkpoint is the wake-up time in epoch ms, written before the sleep began.
    wake_ms = int(bytes(rows[1].output))
    assert rows[1].started_at_epoch_ms + 190 <= wake_ms <= rows[1].started_at_epoch_ms + 210


def test_sleep_outside_a_workflow_is_a_plain_sleep(dbos: type[DBOS]) -> None:
    started = time.monotonic()
    DBOS.sleep(0.05)
    assert time.monotonic() - started >= 0.045


def test_timeout_cancels_a_sleeping_workflow(dbos: type[DBOS]) -> None:
    after: list[int] = []

    @DBOS.step()
    def later() -> None:
        after.append(1)

    @DBOS.workflow()
    def sleepy() -> str:
        DBOS.sleep(5)
        later()
        return "woke"

    started = time.monotonic()
    with (
        SetWorkflowID("timed-out"),
        SetWorkflowTimeout(0.3),
        pytest.raises(DBOSAwaitedWorkflowCancelledError) as caught,
    ):
        sleepy()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0
    assert caught.value.workflow_id == "timed-out"
    assert after == []
    status = DBOS.get_workflow_status("timed-out")
    assert status is not None
    assert (status.status, status.workflow_timeout_ms) == ("CANCELLED", 300)
    assert status.workflow_deadline_epoch_ms is not None
    assert status.workflow_deadline_epoch_ms - status.created_at == 300
    with pytest.raises(DBOSAwaitedWorkflowCancelledError, match="timed-out"):
        DBOS.retrieve_workflow("timed-out").get_result()


def test_timeout_of_a_started_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def sleepy() -> None:
        DBOS.sleep(5)

    started = time.monotonic()
    with SetWorkflowTimeout(0.3):
        handle = DBOS.start_workflow(sleepy)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert time.monotonic() - started < 2.0
    assert handle.get_status().status == "CANCELLED"


def test_child_inherits_the_parent_deadline(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def child() -> str:
        DBOS.sleep(5)
        return "child woke"

    @DBOS.workflow()
    def parent() -> str:
        # The parent returns at once; its child keeps running with the parent's deadline.
        return DBOS.start_workflow(child).workflow_id

    started = time.monotonic()
    with SetWorkflowID("deadline-parent"), SetWorkflowTimeout(0.3):
        child_id = parent()
    assert child_id == "deadline-parent-1"
    wait_until(lambda: _status(child_id) == "CANCELLED", timeout=5, what="child cancelled")
    assert time.monotonic() - started < 2.0

    parent_status = DBOS.get_workflow_status("deadline-parent")
    child_status = DBOS.get_workflow_status(child_id)
    assert parent_status is not None
    assert child_status is not None
    assert parent_status.status == "SUCCESS"
    assert child_status.workflow_deadline_epoch_ms == parent_status.workflow_deadline_epoch_ms
    assert child_status.workflow_deadline_epoch_ms is not None


def test_child_with_its_own_timeout_overrides_the_parent(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def child() -> str:
        DBOS.sleep(0.15)
        return "child woke"

    @DBOS.workflow()
    def parent() -> str:
        with SetWorkflowTimeout(None):
            return DBOS.start_workflow(child).workflow_id

    with SetWorkflowID("override-parent"), SetWorkflowTimeout(0.05):
        child_id = parent()
    # Without a deadline of its own, the child outlives the parent's 0.05 s timeout.
    assert DBOS.retrieve_workflow(child_id).get_result() == "child woke"
    child_status = DBOS.get_workflow_status(child_id)
    assert child_status is not None
    assert child_status.workflow_deadline_epoch_ms is None


def test_timed_out_parent_awaiting_its_child_is_cancelled(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def child() -> None:
        DBOS.sleep(5)

    @DBOS.workflow()
    def parent() -> None:
        child()

    started = time.monotonic()
    with (
        SetWorkflowID("awaiting-parent"),
        SetWorkflowTimeout(0.3),
        pytest.raises(DBOSAwaitedWorkflowCancelledError),
    ):
        parent()
    assert time.monotonic() - started < 2.0
    assert _status("awaiting-parent-1") == "CANCELLED"
    # The parent passed the same deadline: it is cancelled too, not failed.
    assert _status("awaiting-parent") == "CANCELLED"


def test_cancel_stops_a_sleeping_workflow(dbos: type[DBOS]) -> None:
    entered = threading.Event()
    after: list[int] = []

    @DBOS.step()
    def before() -> None:
        entered.set()

    @DBOS.step()
    def later() -> None:
        after.append(1)

    @DBOS.workflow()
    def sleepy() -> None:
        before()
        DBOS.sleep(30)
        later()

    with SetWorkflowID("to-cancel"):
        handle = DBOS.start_workflow(sleepy)
    assert entered.wait(5)
    started = time.monotonic()
    DBOS.cancel_workflow("to-cancel")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError, match="to-cancel"):
        handle.get_result()
    assert time.monotonic() - started < 2.0
    assert handle.get_status().status == "CANCELLED"
    assert after == []


def test_cancel_stops_an_async_workflow_sleeping(dbos: type[DBOS]) -> None:
    entered = threading.Event()
    after: list[int] = []

    @DBOS.step()
    async def before() -> None:
        entered.set()

    @DBOS.workflow()
    async def sleepy() -> None:
        await before()
        await DBOS.sleep_async(30)
        after.append(1)

    async def main() -> float:
        handle = await DBOS.start_workflow_async(sleepy)
        assert await asyncio.to_thread(entered.wait, 5)
        started = time.monotonic()
        await asyncio.to_thread(DBOS.cancel_workflow, handle.workflow_id)
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()
        assert (await handle.get_status()).status == "CANCELLED"
        return time.monotonic() - started

    assert asyncio.run(main()) < 2.0
    assert after == []


def test_cancel_of_a_finished_workflow_changes_nothing(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def quick() -> int:
        return 7

    with SetWorkflowID("finished"):
        assert quick() == 7
    DBOS.cancel_workflow("finished")
    assert _status("finished") == "SUCCESS"
    assert DBOS.retrieve_workflow("finished").get_result() == 7


def test_recovered_workflow_does_not_sleep_again(dbos: type[DBOS], db_url: str) -> None:
    slept: list[float] = []

    @DBOS.workflow()
    def napper() -> str:
        started = time.monotonic()
        DBOS.sleep(0.3)
        slept.append(time.monotonic() - started)
        return "rested"

    with SetWorkflowID("rested"):
        assert napper() == "rested"
    mark_pending(db_url, "rested")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("rested").get_result() == "rested"
    # The recorded wake-up time has passed: the replayed sleep returns at once.
    assert len(slept) == 2
    assert slept[0] >= 0.29
    assert slept[1] < 0.1


def test_deadline_holds_across_recovery(dbos: type[DBOS], db_url: str) -> None:
    runs: list[int] = []

    @DBOS.step()
    def work() -> int:
        runs.append(1)
        return 1

    @DBOS.workflow()
    def quick() -> int:
        return work()

    with SetWorkflowID("deadline-recovered"), SetWorkflowTimeout(0.2):
        assert quick() == 1
    status = DBOS.get_workflow_status("deadline-recovered")
    assert status is not None
    deadline = status.workflow_deadline_epoch_ms
    assert deadline is not None
    wait_until(lambda: time.time() * 1000 > deadline + 10, timeout=5, what="deadline passed")
    mark_pending(db_url, "deadline-recovered")
    relaunch(db_url)

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow("deadline-recovered").get_result()
    assert _status("deadline-recovered") == "CANCELLED"
    assert runs == [1]


def test_cancel_interrupts_a_step_waiting_to_retry(dbos: type[DBOS]) -> None:
    attempts: list[int] = []
    first_failed = threading.Event()

    @DBOS.step(retries_allowed=True, interval_seconds=10, max_attempts=3)
    def flaky() -> None:
        attempts.append(1)
        first_failed.set()
        raise RuntimeError("try again in 10 s")

    @DBOS.workflow()
    def flow() -> None:
        flaky()

    handle = DBOS.start_workflow(flow)
    assert first_failed.wait(5)
    started = time.monotonic()
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert time.monotonic() - started < 2.0
    assert attempts == [1]
    assert handle.get_status().status == "CANCELLED"


def test_timeout_of_an_async_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    async def sleepy() -> None:
        await DBOS.sleep_async(5)

    async def main() -> str:
        with SetWorkflowTimeout(0.3):
            handle = await DBOS.start_workflow_async(sleepy)
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()
        return (await handle.get_status()).status

    started = time.monotonic()
    assert asyncio.run(main()) == "CANCELLED"
    assert time.monotonic() - started < 2.0


def test_timeout_block_consumes_the_outer_workflow_id(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def echo(x: int) -> tuple[int, str | None]:
        return x, DBOS.workflow_id

    with SetWorkflowID("outer-id"):
        with SetWorkflowTimeout(5):
            assert echo(1) == (1, "outer-id")
        value, workflow_id = echo(2)
    assert value == 2
    assert workflow_id != "outer-id"
