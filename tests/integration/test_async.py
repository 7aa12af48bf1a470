"""Async workflows and steps on both backends, each test driving its own event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from perdure import DBOS, SetWorkflowID, WorkflowHandleAsync
from perdure.error import DBOSMaxStepRetriesExceeded
from tests.integration.system_tables import mark_pending, relaunch, step_rows


class AsyncStepError(Exception):
    """Raised by an async step (module level: stored errors keep their type)."""


def test_async_workflow_awaited_directly_with_ten_async_steps(dbos: type[DBOS]) -> None:
    step_ids: list[int | None] = []

    @DBOS.step()
    async def add_one(x: int) -> int:
        await asyncio.sleep(0)
        step_ids.append(DBOS.step_id)
        return x + 1

    @DBOS.workflow()
    async def flow(n: int) -> tuple[list[int], str | None]:
        first = await add_one(0)
        rest = await asyncio.gather(*(add_one(i) for i in range(1, n)))
        return [first, *rest], DBOS.workflow_id

    async def main() -> tuple[list[int], str | None]:
        with SetWorkflowID("async-direct"):
            return await flow(10)

    assert asyncio.run(main()) == (list(range(1, 11)), "async-direct")
    # Each step took its own position, even when gathered concurrently.
    assert sorted(s for s in step_ids if s is not None) == list(range(1, 11))
    status = DBOS.get_workflow_status("async-direct")
    assert status is not None
    assert (status.status, status.output) == ("SUCCESS", (list(range(1, 11)), "async-direct"))


def test_interleaved_async_workflows_on_one_loop_share_its_connection(dbos: type[DBOS]) -> None:
    # The first workflow to start is the one holding the thread's connection; it finishes
    # first, while the others still have steps to record.
    first_done = asyncio.Event()

    @DBOS.step()
    async def bump(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @DBOS.workflow()
    async def flow(n: int, leader: bool) -> int:
        total = await bump(n)
        if leader:
            return total
        await first_done.wait()
        for _ in range(3):
            total = await bump(total)
        return total

    async def main() -> list[int]:
        with SetWorkflowID("leader"):
            lead = asyncio.ensure_future(flow(0, True))
        await asyncio.sleep(0)  # the leader starts first
        followers = []
        for i in range(1, 4):
            with SetWorkflowID(f"follower-{i}"):
                followers.append(asyncio.ensure_future(flow(10 * i, False)))
        led = await lead
        first_done.set()
        return [led, *await asyncio.gather(*followers)]

    assert asyncio.run(main()) == [1, 14, 24, 34]
    for i in range(1, 4):
        assert [s["function_id"] for s in DBOS.list_workflow_steps(f"follower-{i}")] == [1, 2, 3, 4]


def test_async_workflow_error_keeps_its_type(dbos: type[DBOS]) -> None:
    @DBOS.step()
    async def fails() -> None:
        raise AsyncStepError("async boom")

    @DBOS.workflow()
    async def flow() -> None:
        await fails()

    async def main() -> None:
        with SetWorkflowID("async-error"):
            await flow()

    with pytest.raises(AsyncStepError, match="async boom"):
        asyncio.run(main())
    status = DBOS.get_workflow_status("async-error")
    assert status is not None
    assert status.status == "ERROR"
    assert isinstance(status.error, AsyncStepError)


def test_start_workflow_async_of_an_async_workflow(dbos: type[DBOS]) -> None:
    @DBOS.step()
    async def double(x: int) -> int:
        return x * 2

    @DBOS.workflow()
    async def flow(x: int, *, plus: int) -> int:
        return await double(x) + plus

    async def main() -> tuple[WorkflowHandleAsync[int], int, str]:
        with SetWorkflowID("async-started"):
            handle = await DBOS.start_workflow_async(flow, 21, plus=1)
        result = await handle.get_result()
        status = await handle.get_status()
        return handle, result, status.status

    handle, result, status = asyncio.run(main())
    assert (handle.get_workflow_id(), result, status) == ("async-started", 43, "SUCCESS")

    async def again() -> int:
        retrieved = await DBOS.retrieve_workflow_async("async-started")
        return await retrieved.get_result()

    assert asyncio.run(again()) == 43


def test_start_workflow_async_of_a_sync_workflow(dbos: type[DBOS]) -> None:
    threads: list[str] = []

    @DBOS.workflow()
    def sync_flow(word: str) -> str:
        threads.append(threading.current_thread().name)
        return word * 2

    async def main() -> str:
        handle = await DBOS.start_workflow_async(sync_flow, "ab")
        return await handle.get_result()

    assert asyncio.run(main()) == "abab"
    # A sync workflow runs on a worker thread, not on the event loop's thread.
    assert threads != [threading.current_thread().name]


def test_sleep_async_is_durable_and_sleeps(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    async def napper() -> float:
        started = time.monotonic()
        await DBOS.sleep_async(0.2)
        return time.monotonic() - started

    async def main() -> float:
        with SetWorkflowID("async-nap"):
            return await napper()

    slept = asyncio.run(main())
    assert 0.19 <= slept < 2.0
    assert [r.function_name for r in step_rows(db_url, "async-nap")] == ["DBOS.sleep"]


def test_sync_step_inside_an_async_workflow(dbos: type[DBOS]) -> None:
    calls: list[tuple[str | None, int | None]] = []

    @DBOS.step()
    def sync_step(x: int) -> int:
        calls.append((DBOS.workflow_id, DBOS.step_id))
        return x + 100

    @DBOS.step()
    async def async_step(x: int) -> int:
        calls.append((DBOS.workflow_id, DBOS.step_id))
        return x * 3

    @DBOS.workflow()
    async def mixed(x: int) -> int:
        return await async_step(sync_step(x))

    async def main() -> int:
        with SetWorkflowID("mixed"):
            return await mixed(1)

    assert asyncio.run(main()) == 303
    assert calls == [("mixed", 1), ("mixed", 2)]
    # Awaiting the same workflow ID again returns the recorded result without running steps.
    assert asyncio.run(main()) == 303
    assert len(calls) == 2


def test_start_workflow_of_an_async_workflow_from_sync_code(dbos: type[DBOS]) -> None:
    @DBOS.step()
    async def negate(x: int) -> int:
        return -x

    @DBOS.workflow()
    async def flow(x: int) -> int:
        return await negate(x)

    handle = DBOS.start_workflow(flow, 5)
    assert handle.get_result() == -5
    assert handle.get_status().status == "SUCCESS"


def test_a_child_left_unawaited_by_a_background_workflow_runs_to_its_end(
    dbos: type[DBOS],
) -> None:
    entered: list[str] = []

    @DBOS.workflow()
    async def child(tag: str) -> str:
        entered.append(tag)
        await asyncio.sleep(0.05)  # still running when its parent returns
        raise RuntimeError(tag)

    @DBOS.workflow()
    async def parent(tag: str) -> None:
        with SetWorkflowID(f"unawaited-{tag}"):
            await DBOS.start_workflow_async(child, tag)  # started, never awaited

    queue = DBOS.register_queue("unawaited")
    assert queue.enqueue(parent, "queued").get_result() is None
    assert DBOS.start_workflow(parent, "started").get_result() is None
    for tag in ("queued", "started"):
        with pytest.raises(RuntimeError, match=tag):
            DBOS.retrieve_workflow(f"unawaited-{tag}").get_result()
    # Run once each: not cancelled with its parent's event loop, then resumed by recovery.
    assert sorted(entered) == ["queued", "started"]


def test_async_child_workflow_gets_a_derived_id(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    async def child(x: int) -> str | None:
        await asyncio.sleep(0)
        return f"{DBOS.workflow_id}:{x}"

    @DBOS.workflow()
    async def parent() -> list[str | None]:
        direct = await child(1)
        handle = await DBOS.start_workflow_async(child, 2)
        return [direct, await handle.get_result()]

    async def main() -> list[str | None]:
        with SetWorkflowID("async-parent"):
            return await parent()

    assert asyncio.run(main()) == ["async-parent-1:1", "async-parent-2:2"]
    second = DBOS.get_workflow_status("async-parent-2")
    assert second is not None
    assert (second.status, second.parent_workflow_id) == ("SUCCESS", "async-parent")


def test_async_step_retries_then_gives_up(dbos: type[DBOS]) -> None:
    attempts: list[tuple[int | None, int | None]] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3, backoff_rate=2)
    async def flaky() -> None:
        status = DBOS.step_status
        assert status is not None
        attempts.append((status.current_attempt, status.max_attempts))
        raise AsyncStepError(f"attempt {len(attempts)}")

    @DBOS.workflow()
    async def flow() -> None:
        await flaky()

    async def main() -> None:
        with SetWorkflowID("async-retries"):
            await flow()

    with pytest.raises(DBOSMaxStepRetriesExceeded) as caught:
        asyncio.run(main())
    assert attempts == [(0, 3), (1, 3), (2, 3)]  # counted from 0, as in DBOS
    assert isinstance(caught.value.__cause__, AsyncStepError)
    assert str(caught.value.__cause__) == "attempt 3"
    status = DBOS.get_workflow_status("async-retries")
    assert status is not None
    assert status.status == "ERROR"


def test_recovered_async_workflow_replays_its_steps(dbos: type[DBOS], db_url: str) -> None:
    step_calls: list[int] = []
    body_runs: list[int] = []

    @DBOS.step()
    async def triple(x: int) -> int:
        step_calls.append(x)
        return x * 3

    @DBOS.workflow()
    async def flow(x: int) -> int:
        body_runs.append(x)
        return await triple(x) + await triple(x + 1)

    async def main() -> int:
        with SetWorkflowID("async-recovered"):
            return await flow(2)

    assert asyncio.run(main()) == 15
    mark_pending(db_url, "async-recovered")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("async-recovered").get_result() == 15
    assert body_runs == [2, 2]
    assert step_calls == [2, 3]
