"""Replay checks determinism: changed workflow code fails with `DBOSUnexpectedStepError`.

Each test runs a workflow to completion, marks it PENDING again in the system database, registers
a changed body under the same workflow name and relaunches: recovery replays the recorded steps
against the new code, exactly as after a crash followed by a deployment.
"""

from __future__ import annotations

import pytest

from perdure import DBOS, SetWorkflowID, WorkflowStatus
from perdure.error import DBOSUnexpectedStepError
from tests.fixtures.app import wait_until
from tests.integration.system_tables import mark_pending, relaunch


def _finished_status(workflow_id: str) -> WorkflowStatus | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status if status is not None and status.status != "PENDING" else None


def _recovered_error(db_url: str, workflow_id: str) -> BaseException:
    """Relaunch, wait for the recovered workflow to end in ERROR, and return its error."""
    relaunch(db_url)
    status = wait_until(
        lambda: _finished_status(workflow_id), timeout=10, what=f"recovery of {workflow_id}"
    )
    assert status is not None
    assert status.status == "ERROR"
    assert status.error is not None
    return status.error


def test_changed_step_order_is_detected_on_replay(dbos: type[DBOS], db_url: str) -> None:
    calls: list[str] = []

    @DBOS.step(name="a")
    def step_a() -> str:
        calls.append("a")
        return "a"

    @DBOS.step(name="b")
    def step_b() -> str:
        calls.append("b")
        return "b"

    @DBOS.workflow(name="same")
    def original() -> str:
        return step_a() + step_b()

    with SetWorkflowID("w"):
        assert original() == "ab"
    mark_pending(db_url, "w")

    @DBOS.workflow(name="same")
    def changed() -> str:
        return step_b() + step_a()

    error = _recovered_error(db_url, "w")
    assert isinstance(error, DBOSUnexpectedStepError)
    assert (error.workflow_id, error.step_id, error.expected_name, error.recorded_name) == (
        "w",
        1,
        "b",
        "a",
    )
    message = str(error)
    assert "'w'" in message
    assert "position 1" in message
    assert "'a'" in message
    assert "'b'" in message
    # Neither step ran again: the mismatch is caught before running the step.
    assert calls == ["a", "b"]
    with pytest.raises(DBOSUnexpectedStepError, match="position 1"):
        DBOS.retrieve_workflow("w").get_result()


def test_inserted_step_is_detected_at_its_position(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.step(name="fetch")
    def fetch() -> int:
        return 1

    @DBOS.step(name="store")
    def store(x: int) -> int:
        return x + 1

    @DBOS.step(name="audit")
    def audit() -> None:
        return None

    @DBOS.workflow(name="pipeline")
    def original() -> int:
        return store(fetch())

    with SetWorkflowID("p"):
        assert original() == 2
    mark_pending(db_url, "p")

    @DBOS.workflow(name="pipeline")
    def changed() -> int:
        value = fetch()
        audit()  # new code inserted a step between the two recorded ones
        return store(value)

    error = _recovered_error(db_url, "p")
    assert isinstance(error, DBOSUnexpectedStepError)
    assert (error.workflow_id, error.step_id, error.expected_name, error.recorded_name) == (
        "p",
        2,
        "audit",
        "store",
    )


def test_step_replaced_by_a_child_workflow_is_detected(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.step(name="work")
    def work() -> int:
        return 1

    @DBOS.workflow(name="helper")
    def helper() -> int:
        return 2

    @DBOS.workflow(name="outer")
    def original() -> int:
        return work()

    with SetWorkflowID("o"):
        assert original() == 1
    mark_pending(db_url, "o")

    @DBOS.workflow(name="outer")
    def changed() -> int:
        return helper()

    error = _recovered_error(db_url, "o")
    assert isinstance(error, DBOSUnexpectedStepError)
    assert (error.workflow_id, error.step_id, error.expected_name, error.recorded_name) == (
        "o",
        1,
        "helper",
        "work",
    )
    assert DBOS.get_workflow_status("o-1") is None  # the child was never started


def test_unchanged_code_replays_cleanly(dbos: type[DBOS], db_url: str) -> None:
    calls: list[str] = []

    @DBOS.step(name="a")
    def step_a() -> str:
        calls.append("a")
        return "a"

    @DBOS.workflow(name="child")
    def child() -> str:
        calls.append("child")
        return "c"

    @DBOS.workflow(name="stable")
    def stable() -> str:
        DBOS.sleep(0.01)
        return step_a() + child()

    with SetWorkflowID("s"):
        assert stable() == "ac"
    mark_pending(db_url, "s")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("s").get_result() == "ac"
    assert calls == ["a", "child"]
