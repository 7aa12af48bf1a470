"""A system-database failure never becomes a workflow's outcome, and never strands it.

The execution stops without recording anything; the workflow stays PENDING, owned by this
live process, whose sweep resumes it; every waiter gets the outcome of that run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSSystemDatabaseError
from perdure.execution import takeover
from tests.fixtures.app import make_config


@pytest.fixture
def sweeping(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[DBOS]]:
    """Perdure launched with a quick sweep of its own orphaned workflows."""
    monkeypatch.setattr(takeover, "SWEEP_INTERVAL_SEC", 0.2)
    DBOS(config=make_config(db_url))
    DBOS.launch()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def _fail_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> threading.Event:
    """Make ``target.name`` raise a system-database error on its first call only."""
    original = getattr(target, name)
    failed = threading.Event()

    def failing(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set():
            failed.set()
            raise DBOSSystemDatabaseError("disk full (simulated)", "53100")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    return failed


def test_a_failed_completion_write_is_resumed_and_its_waiter_returns(
    sweeping: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []

    @DBOS.step()
    def work() -> int:
        runs.append(1)
        return 1

    @DBOS.workflow()
    def flow() -> int:
        return work() + 1

    runtime = DBOS._runtime
    assert runtime is not None
    failed = _fail_once(monkeypatch, runtime.engine.store, "finish_workflow")
    with SetWorkflowID("w1"):
        handle = DBOS.start_workflow(flow)
    assert handle.get_result() == 2  # the sweep resumed it; the waiter did not hang
    assert failed.is_set()
    status = DBOS.get_workflow_status("w1")
    assert status is not None
    assert (status.status, status.recovery_attempts) == ("SUCCESS", 2)
    assert runs == [1]  # the recorded step replayed, not run again


def test_a_failed_checkpoint_is_not_the_workflows_error(
    sweeping: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    @DBOS.step()
    def work() -> int:
        return 1

    @DBOS.workflow()
    def flow() -> int:
        return work()

    runtime = DBOS._runtime
    assert runtime is not None
    _fail_once(monkeypatch, runtime.engine.store, "record_step")
    with SetWorkflowID("w2"), pytest.raises(DBOSSystemDatabaseError, match="simulated"):
        flow()  # the direct caller hears of the failure of its own call...
    # ...but the workflow is not failed: it is resumed and finishes.
    assert DBOS.retrieve_workflow("w2").get_result() == 1
    status = DBOS.get_workflow_status("w2")
    assert status is not None
    assert status.status == "SUCCESS"


def test_a_system_failure_inside_a_step_is_not_the_steps_recorded_error(
    sweeping: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    @DBOS.workflow()
    def target() -> str:
        return str(DBOS.recv("t", timeout_seconds=30))

    @DBOS.step()
    def notify() -> str:
        DBOS.send("target-1", "hello", "t")  # a Perdure call from inside a step
        return "sent"

    @DBOS.workflow()
    def sender() -> str:
        return notify()

    with SetWorkflowID("target-1"):
        receiver = DBOS.start_workflow(target)
    runtime = DBOS._runtime
    assert runtime is not None
    _fail_once(monkeypatch, runtime.engine.store, "send_message")
    with SetWorkflowID("sender-1"):
        handle = DBOS.start_workflow(sender)
    assert handle.get_result() == "sent"  # resumed; the step ran again and sent this time
    assert receiver.get_result() == "hello"
    steps = DBOS.list_workflow_steps("sender-1")
    assert [(s["function_name"], s["error"]) for s in steps] == [(notify.__qualname__, None)]
