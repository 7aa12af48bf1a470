"""A recovered workflow whose function is not registered is reported and kept, not lost."""

from __future__ import annotations

import logging

import pytest

from perdure import DBOS, SetWorkflowID
from tests.integration.system_tables import mark_pending, relaunch, step_rows, workflow_row


def test_unregistered_workflow_is_logged_and_resumes_once_registered(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @DBOS.step()
    def first() -> str:
        ran.append("first")
        return "one"

    def body() -> str:
        return first() + "-done"

    flow = DBOS.workflow(name="renamed-later")(body)
    with SetWorkflowID("orphan"):
        flow()
    mark_pending(db_url, "orphan")
    DBOS._registry.workflows.pop("renamed-later")  # this process no longer knows the function

    with caplog.at_level(logging.ERROR, logger="perdure"):
        relaunch(db_url)
        runtime = DBOS._runtime
        assert runtime is not None
        runtime.wait_for_recovery()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        "orphan" in m and "renamed-later" in m and "Import the module" in m for m in messages
    )
    assert workflow_row(db_url, "orphan").status == "PENDING"
    assert workflow_row(db_url, "orphan").recovery_attempts == 1  # no attempt was burned
    assert len(step_rows(db_url, "orphan")) == 1  # recorded work kept

    DBOS.workflow(name="renamed-later")(body)
    ran.clear()
    relaunch(db_url)
    assert DBOS.retrieve_workflow("orphan").get_result() == "one-done"
    assert ran == []  # the recorded step was replayed, not re-run
