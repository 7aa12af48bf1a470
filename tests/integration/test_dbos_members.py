"""Members of DBOS's `DBOS` class: `application_version`, `executor_id`, `get_result`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from perdure import DBOS, SetWorkflowID
from tests.fixtures.app import make_config
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
