"""Workflows and steps on both backends: results, errors, idempotent IDs, children, handles."""

from __future__ import annotations

import threading

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSConflictingWorkflowError, DBOSNonExistentWorkflowError


def test_workflow_returns_and_records_result(dbos: type[DBOS]) -> None:
    calls: list[int] = []

    @DBOS.step()
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    @DBOS.workflow()
    def flow(x: int) -> tuple[int, str | None]:
        return double(x) + double(x + 1), DBOS.workflow_id

    with SetWorkflowID("wf-1"):
        assert flow(3) == (14, "wf-1")
    status = DBOS.get_workflow_status("wf-1")
    assert status is not None
    assert (status.status, status.output, status.input) == (
        "SUCCESS",
        (14, "wf-1"),
        {"args": (3,), "kwargs": {}},
    )
    assert calls == [3, 4]


def test_same_id_twice_runs_once(dbos: type[DBOS]) -> None:
    runs: list[str] = []

    @DBOS.workflow()
    def once(tag: str) -> str:
        runs.append(tag)
        return tag.upper()

    for _ in range(3):
        with SetWorkflowID("idem"):
            assert once("a") == "A"
    assert runs == ["a"]


def test_same_id_from_many_threads_runs_once(dbos: type[DBOS]) -> None:
    runs: list[int] = []
    gate = threading.Barrier(8)

    @DBOS.workflow()
    def once() -> int:
        runs.append(1)
        return 42

    results: list[int] = []

    def caller() -> None:
        gate.wait()
        with SetWorkflowID("contended"):
            results.append(once())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8
    assert runs == [1]


def test_workflow_error_keeps_type_and_is_recorded(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def failing() -> None:
        raise KeyError("missing-thing")

    with SetWorkflowID("fails"), pytest.raises(KeyError, match="missing-thing"):
        failing()
    handle = DBOS.retrieve_workflow("fails")
    assert handle.get_status().status == "ERROR"
    with pytest.raises(KeyError, match="missing-thing"):
        handle.get_result()


def test_reusing_an_id_for_another_workflow_is_refused(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def first() -> int:
        return 1

    @DBOS.workflow()
    def second() -> int:
        return 2

    with SetWorkflowID("shared-id"):
        first()
    with SetWorkflowID("shared-id"), pytest.raises(DBOSConflictingWorkflowError, match="shared-id"):
        second()


def test_start_workflow_and_handle(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def add(a: int, b: int) -> int:
        return a + b

    handle = DBOS.start_workflow(add, 2, b=5)
    assert handle.get_result() == 7
    assert handle.get_status().status == "SUCCESS"
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 7


def test_unknown_workflow_id(dbos: type[DBOS]) -> None:
    assert DBOS.get_workflow_status("nope") is None
    with pytest.raises(DBOSNonExistentWorkflowError, match="nope"):
        DBOS.retrieve_workflow("nope")


def test_child_workflows_get_derived_ids(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def child(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def parent() -> list[int]:
        direct = child(1)
        handle = DBOS.start_workflow(child, 10)
        return [direct, handle.get_result()]

    with SetWorkflowID("parent"):
        assert parent() == [2, 11]
    first = DBOS.get_workflow_status("parent-1")
    second = DBOS.get_workflow_status("parent-2")
    assert first is not None
    assert second is not None
    assert (first.output, first.parent_workflow_id) == (2, "parent")
    assert (second.output, second.parent_workflow_id) == (11, "parent")
