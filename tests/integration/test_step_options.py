"""DBOS's step options: ``should_retry``, ``timeout_seconds`` and ``preemptible``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInitializationError,
    DBOSMaxStepRetriesExceeded,
    DBOSStepTimeoutError,
)
from tests.fixtures.app import wait_until


class Permanent(Exception):
    """An error no retry can fix."""


class Transient(Exception):
    """An error a retry may fix."""


def test_should_retry_stops_retries_for_errors_it_refuses(dbos: type[DBOS]) -> None:
    attempts: list[str] = []

    @DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.01,
               should_retry=lambda exc: isinstance(exc, Transient))  # fmt: skip
    def fetch(errors: list[Exception]) -> str:
        attempts.append(type(errors[0]).__name__)
        raise errors.pop(0)

    async def refuse_async(exc: BaseException) -> bool:
        return False

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01,
               should_retry=refuse_async)  # fmt: skip
    async def fetch_async() -> str:
        attempts.append("async")
        raise Transient("refused by an async predicate")

    @DBOS.workflow()
    def flow(errors: list[Exception]) -> str:
        return fetch(errors)

    @DBOS.workflow()
    async def flow_async() -> str:
        return await fetch_async()

    with SetWorkflowID("retry-1"), pytest.raises(Permanent):
        flow([Transient("t"), Permanent("p"), Transient("never reached")])
    assert attempts == ["Transient", "Permanent"]  # the permanent error ended it at once
    assert DBOS.list_workflow_steps("retry-1")[0]["error"].__class__ is Permanent
    attempts.clear()
    with SetWorkflowID("retry-2"), pytest.raises(DBOSMaxStepRetriesExceeded):
        flow([Transient("a"), Transient("b"), Transient("c"), Transient("d"), Transient("e")])
    assert len(attempts) == 5
    attempts.clear()
    with pytest.raises(Transient):
        asyncio.run(flow_async())
    assert attempts == ["async"]
    with pytest.raises(DBOSInitializationError, match="plain function"):
        DBOS.step(should_retry=refuse_async)(lambda: None)


def test_timeout_interrupts_an_attempt_and_is_retried(dbos: type[DBOS]) -> None:
    attempts: list[int] = []

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01,
               timeout_seconds=0.2)  # fmt: skip
    async def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            await asyncio.sleep(30)  # interrupted at 0.2 s
        return "fast"

    @DBOS.step(timeout_seconds=0.1)
    async def always_slow() -> str:
        await asyncio.sleep(30)
        return "never"

    @DBOS.workflow()
    async def flow() -> str:
        return await slow_then_fast()

    @DBOS.workflow()
    async def stuck() -> str:
        return await always_slow()

    assert asyncio.run(flow()) == "fast"
    assert len(attempts) == 2
    with SetWorkflowID("timeout-1"), pytest.raises(DBOSStepTimeoutError):
        asyncio.run(stuck())
    recorded = DBOS.list_workflow_steps("timeout-1")[0]["error"]
    assert isinstance(recorded, DBOSStepTimeoutError)
    for bad in (0, -1, float("inf")):
        with pytest.raises(DBOSInitializationError, match="positive number"):
            DBOS.step(timeout_seconds=bad)(always_slow)
    with pytest.raises(DBOSInitializationError, match="plain function"):
        DBOS.step(timeout_seconds=1)(lambda: None)


def test_preemptible_step_stops_when_its_workflow_is_cancelled(dbos: type[DBOS]) -> None:
    started = threading.Event()
    finished: list[str] = []

    @DBOS.step(preemptible=True)
    async def long_call() -> str:
        started.set()
        await asyncio.sleep(30)
        finished.append("long_call")
        return "done"

    @DBOS.workflow()
    async def flow() -> str:
        return await long_call()

    handle = DBOS.start_workflow(flow)
    assert started.wait(20)
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    wait_until(lambda: not dbos._require_runtime().engine.is_active(handle.workflow_id))
    assert finished == []
    assert DBOS.list_workflow_steps(handle.workflow_id) == []  # interrupted: nothing recorded
    with pytest.raises(DBOSInitializationError, match="plain function"):
        DBOS.step(preemptible=True)(lambda: None)
