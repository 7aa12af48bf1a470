"""`perdure.testing.crash_at`: a workflow dies at a named step, in-process, and `recover()`
resumes it through the takeover path, so effects can be counted without subprocesses."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.testing import SimulatedCrash, VirtualClock, crash_at


def _status(workflow_id: str) -> tuple[str, str]:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status.status, status.executor_id or ""


class Effects:
    """What steps did in the outside world, counted (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1


def test_a_crash_after_the_checkpoint_recovers_without_running_the_step_again(
    dbos: type[DBOS],
) -> None:
    effects = Effects()

    @DBOS.step()
    def charge_card(order: str) -> str:
        effects.add("charge")
        return f"receipt-{order}"

    @DBOS.step()
    def ship(order: str) -> None:
        effects.add("ship")

    @DBOS.workflow()
    def checkout(order: str) -> str:
        receipt = charge_card(order)
        ship(order)
        return receipt

    with SetWorkflowID("order-1"), crash_at("charge_card") as crash:
        handle = DBOS.start_workflow(checkout, "order-1")
    # The step ran and was recorded; the process died before shipping.
    assert crash.workflow_ids == ["order-1"]
    assert _status("order-1") == ("PENDING", crash.executor_id)
    assert effects.counts == {"charge": 1}

    [recovered] = crash.recover()
    assert recovered.get_result() == handle.get_result() == "receipt-order-1"
    assert effects.counts == {"charge": 1, "ship": 1}  # exactly once each
    status = handle.get_status()
    assert (status.status, status.executor_id, status.recovery_attempts) == ("SUCCESS", "local", 2)


def test_a_crash_before_the_checkpoint_runs_the_step_again(dbos: type[DBOS]) -> None:
    effects = Effects()
    charged: set[str] = set()  # the payment provider, deduplicating by idempotency key

    @DBOS.step()
    def charge_card(order: str) -> None:
        effects.add("attempt")
        key = f"{DBOS.workflow_id}-charge"
        if key not in charged:
            charged.add(key)
            effects.add("charge")

    @DBOS.workflow()
    def checkout(order: str) -> str:
        charge_card(order)
        return "paid"

    with SetWorkflowID("order-2"), crash_at("charge_card", when="before_checkpoint") as crash:
        handle = DBOS.start_workflow(checkout, "order-2")
    assert _status("order-2") == ("PENDING", crash.executor_id)
    crash.recover()
    assert handle.get_result() == "paid"
    # At least once: the body ran twice; the idempotency key kept the effect to one.
    assert effects.counts == {"attempt": 2, "charge": 1}


def test_a_direct_call_ends_the_block_and_recovers(dbos: type[DBOS]) -> None:
    effects = Effects()

    @DBOS.step()
    def work() -> None:
        effects.add("work")

    @DBOS.workflow()
    def job() -> str:
        work()
        work()
        return "done"

    with SetWorkflowID("direct"), crash_at(work) as crash:
        job()  # dies at its first step: the rest of the block does not run
        pytest.fail("the crash ends the block")
    assert crash.fired
    [handle] = crash.recover()
    assert handle.get_result() == "done"
    assert effects.counts == {"work": 2}


def test_a_child_called_directly_stops_its_parent_and_both_recover(dbos: type[DBOS]) -> None:
    effects = Effects()

    @DBOS.step()
    def step_of_child() -> None:
        effects.add("child step")

    @DBOS.workflow()
    def child() -> str:
        step_of_child()
        return "child done"

    @DBOS.step()
    def step_of_parent() -> None:
        effects.add("parent step")

    @DBOS.workflow()
    def parent() -> str:
        result = child()
        step_of_parent()
        return f"parent after {result}"

    with SetWorkflowID("parent"), crash_at("step_of_child") as crash:
        handle = DBOS.start_workflow(parent)
    assert crash.workflow_ids == ["parent-1", "parent"]
    for workflow_id in crash.workflow_ids:
        assert _status(workflow_id) == ("PENDING", crash.executor_id)
    crash.recover()
    assert handle.get_result() == "parent after child done"
    assert effects.counts == {"child step": 1, "parent step": 1}


def test_an_async_workflow_crashes_and_recovers(dbos: type[DBOS]) -> None:
    effects = Effects()

    @DBOS.step()
    async def fetch() -> int:
        effects.add("fetch")
        return 7

    @DBOS.workflow()
    async def pipeline() -> int:
        value = await fetch()
        return value * 6

    async def main() -> int:
        with (
            SetWorkflowID("pipeline"),
            crash_at("fetch") as crash,
            pytest.raises(SimulatedCrash),  # swallowed by crash_at too; seen here first
        ):
            await pipeline()
        assert _status("pipeline") == ("PENDING", crash.executor_id)
        await asyncio.to_thread(crash.recover)
        handle = await DBOS.retrieve_workflow_async("pipeline")
        return int(await handle.get_result())

    assert asyncio.run(main()) == 42
    assert effects.counts == {"fetch": 1}


def test_only_the_named_workflow_crashes(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def touch() -> None:
        pass

    @DBOS.workflow()
    def toucher() -> str:
        touch()
        return "touched"

    with crash_at("touch", workflow_id="second") as crash:
        with SetWorkflowID("first"):
            assert toucher() == "touched"
        with SetWorkflowID("second"):
            DBOS.start_workflow(toucher)
    assert crash.workflow_ids == ["second"]
    assert _status("first") == ("SUCCESS", "local")
    crash.recover()
    assert DBOS.retrieve_workflow("second").get_result() == "touched"


def test_a_step_never_reached_fails_the_block(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def idle() -> None:
        pass

    with (
        pytest.raises(AssertionError, match="No workflow reached step 'missing'"),
        crash_at("missing", timeout=0.2),  # its end raises
    ):
        idle()
    with pytest.raises(ValueError, match="when"), crash_at("x", when="later"):  # type: ignore[arg-type] # checked at run time too
        pass


def test_a_sleep_recovered_after_a_crash_wakes_at_its_recorded_time(db_url: str) -> None:
    """Crash and clock together: the wake-up time recorded before the crash holds."""
    from tests.fixtures.app import make_config  # noqa: PLC0415 - this test builds its app

    effects = Effects()
    with VirtualClock() as clock:
        DBOS(config=make_config(db_url))

        @DBOS.step()
        def remind() -> None:
            effects.add("remind")

        @DBOS.workflow()
        def reminder() -> str:
            DBOS.sleep(86400)
            remind()
            return "reminded"

        DBOS.launch()
        try:
            with SetWorkflowID("reminder"), crash_at("DBOS.sleep") as crash:
                DBOS.start_workflow(reminder)
            recorded_wake = clock.now()  # about a day before it wakes
            crash.recover()
            due = clock.wait_for_timer("reminder")
            assert 86000 <= (due - recorded_wake).total_seconds() <= 86400
            clock.advance(days=1)
            assert DBOS.retrieve_workflow("reminder").get_result() == "reminded"
            assert effects.counts == {"remind": 1}
        finally:
            DBOS.destroy(destroy_registry=True)
