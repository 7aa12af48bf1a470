"""Members of DBOS's `DBOS` class: `application_version`, `executor_id`, `get_result`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from perdure import DBOS, SetWorkflowID
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch


@pytest.fixture
def versioned(db_url: str) -> Iterator[str]:
    DBOS(config=make_config(db_url, application_version="v7", executor_id="exec-1"))
    DBOS.launch()
    yield db_url
    DBOS.destroy(destroy_registry=True)


def test_application_version_and_executor_id(versioned: str) -> None:
    assert (DBOS.application_version, DBOS.executor_id) == ("v7", "exec-1")
    assert DBOS.span is None  # no tracing configured


def test_get_result_by_workflow_id_is_recorded_inside_a_workflow(versioned: str) -> None:
    runs: list[str] = []

    @DBOS.workflow()
    def child(n: int) -> int:
        runs.append("child")
        if n < 0:
            raise ValueError("negative")
        return n * 2

    @DBOS.workflow()
    def parent(child_id: str) -> int:
        runs.append("parent")
        return int(DBOS.get_result(child_id)) + 1

    with SetWorkflowID("child-1"):
        assert child(5) == 10
    assert DBOS.get_result("child-1") == 10
    with SetWorkflowID("parent-1"):
        assert parent("child-1") == 11
    mark_pending(versioned, "parent-1")
    relaunch(versioned, application_version="v7", executor_id="exec-1")
    assert DBOS.retrieve_workflow("parent-1").get_result() == 11
    assert runs == ["child", "parent", "parent"]
    steps = DBOS.list_workflow_steps("parent-1")
    assert [s["output"] for s in steps] == [10]  # the awaited result, recorded once

    with SetWorkflowID("child-2"), pytest.raises(ValueError, match="negative"):
        child(-1)
    with pytest.raises(ValueError, match="negative"):
        DBOS.get_result("child-2")
    assert asyncio.run(DBOS.get_result_async("child-1")) == 10


def test_bulk_resume_and_delete(versioned: str) -> None:
    @DBOS.workflow()
    def job(n: int) -> int:
        return n

    ids = []
    for n in range(3):
        with SetWorkflowID(f"bulk-{n}"):
            DBOS.start_workflow(job, n).get_result()
        ids.append(f"bulk-{n}")
    handles = DBOS.resume_workflows(ids)  # finished ones stay as they are
    assert [h.get_result() for h in handles] == [0, 1, 2]

    @DBOS.workflow()
    def waiter() -> object:
        return DBOS.recv("go", timeout_seconds=30)

    with SetWorkflowID("waiter-1"):
        DBOS.start_workflow(waiter)
    DBOS.cancel_workflow("waiter-1")
    wait_until(lambda: DBOS.retrieve_workflow("waiter-1").get_status().status == "CANCELLED")
    [resumed] = DBOS.resume_workflows(["waiter-1"])
    DBOS.send("waiter-1", "go on", "go")
    assert resumed.get_result() == "go on"
    requeued = DBOS.resume_workflows(ids, queue_name="q")  # finished: left as they are
    assert [h.get_status().status for h in requeued] == ["SUCCESS"] * 3
    DBOS.delete_workflows(ids[:2])
    assert [DBOS.get_workflow_status(i) is None for i in ids] == [True, True, False]
    asyncio.run(DBOS.delete_workflows_async(ids[2:]))
    assert DBOS.get_workflow_status(ids[2]) is None
