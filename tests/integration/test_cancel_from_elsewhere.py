"""A workflow cancelled by another process stops starting children, and keeps its format."""

from __future__ import annotations

import threading

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSAwaitedWorkflowCancelledError
from tests.integration.system_tables import run_sql


def test_a_parent_cancelled_in_the_database_starts_no_child(dbos: type[DBOS], db_url: str) -> None:
    cancelled = threading.Event()

    reached = threading.Event()

    @DBOS.step()
    def first_step() -> None:
        reached.set()

    @DBOS.workflow()
    def child() -> str:
        return "ran"

    @DBOS.workflow()
    def parent() -> str:
        first_step()
        assert cancelled.wait(20)  # between two operations: no step would notice the cancel
        return child()

    with SetWorkflowID("parent"):
        handle = DBOS.start_workflow(parent)
    assert reached.wait(20)
    # As another process would: only the row changes, nothing is signalled in this process.
    run_sql(
        db_url, "UPDATE {p}workflow_status SET status = 'CANCELLED' WHERE workflow_id = 'parent'"
    )
    cancelled.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert DBOS.get_workflow_status("parent-1") is None  # the child was never started


def test_output_keeps_the_format_the_workflow_was_started_with(
    dbos: type[DBOS], db_url: str
) -> None:
    from tests.integration.system_tables import mark_pending, relaunch  # noqa: PLC0415

    @DBOS.workflow()
    def answer() -> dict[str, int]:
        return {"answer": 42}

    with SetWorkflowID("fmt"):
        answer()
    mark_pending(db_url, "fmt")
    relaunch(db_url, serializer="pickle")  # the default changes between start and completion
    assert DBOS.retrieve_workflow("fmt").get_result() == {"answer": 42}
    row = run_sql(db_url, "SELECT serialization FROM {p}workflow_status WHERE workflow_id = 'fmt'")
    assert row[0][0] == "json"
