"""Log records carry the ID of the workflow they were logged from, on both backends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from perdure import DBOS, SetWorkflowID


class RetryMeError(Exception):
    """Makes a step retry once."""


def _records(caplog: pytest.LogCaptureFixture, marker: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if marker in r.getMessage()]


def test_workflow_and_step_logs_carry_the_workflow_id(
    dbos: type[DBOS], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="perdure")

    @DBOS.step()
    def step() -> None:
        DBOS.logger.info("marker-step %s", "arg")

    @DBOS.workflow()
    def flow() -> None:
        DBOS.logger.info("marker-workflow")
        step()

    with SetWorkflowID("logged"):
        flow()
    DBOS.logger.info("marker-outside")

    assert [(r.getMessage(), r.workflow_id) for r in _records(caplog, "marker-")] == [  # type: ignore[attr-defined]
        ("marker-workflow", "logged"),
        ("marker-step arg", "logged"),
        ("marker-outside", ""),
    ]
    assert all(r.name == "perdure" for r in _records(caplog, "marker-"))


def test_background_and_async_workflows_log_their_own_ids(
    dbos: type[DBOS], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="perdure")

    @DBOS.workflow()
    def background(tag: str) -> None:
        DBOS.logger.info("marker-bg %s", tag)

    @DBOS.workflow()
    async def in_loop(tag: str) -> None:
        await asyncio.sleep(0)
        DBOS.logger.info("marker-async %s", tag)

    handles = []
    for tag in ("a", "b", "c"):
        with SetWorkflowID(f"bg-{tag}"):
            handles.append(DBOS.start_workflow(background, tag))
    for handle in handles:
        handle.get_result()

    async def main() -> None:
        with SetWorkflowID("async-x"):
            await in_loop("x")

    asyncio.run(main())

    logged = {r.getMessage(): r.workflow_id for r in _records(caplog, "marker-")}  # type: ignore[attr-defined]
    assert logged == {
        "marker-bg a": "bg-a",
        "marker-bg b": "bg-b",
        "marker-bg c": "bg-c",
        "marker-async x": "async-x",
    }


def test_library_warnings_carry_the_workflow_id(
    dbos: type[DBOS], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="perdure")
    attempts: list[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=2)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryMeError("first attempt fails")
        return "ok"

    @DBOS.workflow()
    def flow() -> str:
        return flaky()

    with SetWorkflowID("retry-logged"):
        assert flow() == "ok"
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 1
    assert retries[0].name.startswith("perdure.")
    assert retries[0].levelno == logging.WARNING
    assert retries[0].workflow_id == "retry-logged"  # type: ignore[attr-defined]
    assert "first attempt fails" in retries[0].getMessage()
