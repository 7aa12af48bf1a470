"""Queues on both backends: enqueue and results, concurrency, rate limits, children, recovery."""

from __future__ import annotations

import asyncio
import threading
import time

from perdure import DBOS, Queue, SetWorkflowID, WorkflowHandleAsync
from perdure.queues.limits import most_starts_in_any_window
from tests.fixtures.app import wait_until
from tests.integration.queue_timeline import Timeline
from tests.integration.system_tables import mark_pending, relaunch, run_sql

# Long enough that runs would overlap if a limit were not kept; short enough for a quick suite.
WORK_SEC = 0.05


def test_enqueue_returns_a_handle_to_the_result(dbos: type[DBOS]) -> None:
    queue = Queue("basic")

    @DBOS.step()
    def double(x: int) -> int:
        return 2 * x

    @DBOS.workflow()
    def flow(x: int) -> int:
        return double(x) + 1

    handle = queue.enqueue(flow, 20)
    assert handle.get_result() == 41
    by_name = DBOS.enqueue_workflow("basic", flow, 1)
    assert by_name.get_result() == 3
    with SetWorkflowID("queued-7"):
        named = queue.enqueue(flow, 7)
    assert named.workflow_id == "queued-7"
    assert named.get_result() == 15
    status = named.get_status()
    assert (status.status, status.queue_name) == ("SUCCESS", "basic")
    assert DBOS.retrieve_workflow("queued-7").get_result() == 15


def test_enqueue_async(dbos: type[DBOS]) -> None:
    queue = Queue("async")

    @DBOS.workflow()
    async def flow(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def main() -> int:
        handle = await queue.enqueue_async(flow, 1)
        assert isinstance(handle, WorkflowHandleAsync)
        return await handle.get_result()

    assert asyncio.run(main()) == 2


def test_concurrency_one_runs_one_at_a_time(dbos: type[DBOS]) -> None:
    queue = Queue("serial", concurrency=1)
    timeline = Timeline()

    @DBOS.step()
    def work(label: str) -> None:
        timeline.start(label)
        time.sleep(WORK_SEC)  # the work itself, during which another run would overlap
        timeline.end(label)

    @DBOS.workflow()
    def flow(label: str) -> str:
        work(label)
        return label

    handles = [queue.enqueue(flow, f"w{i}") for i in range(5)]
    assert [h.get_result() for h in handles] == [f"w{i}" for i in range(5)]
    assert timeline.max_overlap() == 1
    assert timeline.started() == [f"w{i}" for i in range(5)]  # FIFO


def test_worker_concurrency_limits_this_process(dbos: type[DBOS]) -> None:
    queue = Queue("per-worker", worker_concurrency=2)
    timeline = Timeline()

    @DBOS.workflow()
    def flow(label: str) -> None:
        timeline.start(label)
        time.sleep(WORK_SEC * 2)  # the work itself
        timeline.end(label)

    handles = [queue.enqueue(flow, f"w{i}") for i in range(6)]
    for handle in handles:
        handle.get_result()
    assert timeline.max_overlap() == 2


def test_rate_limiter_caps_starts_in_any_window(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("limited", limiter={"limit": 2, "period": 0.4})

    @DBOS.workflow()
    def flow(i: int) -> int:
        return i

    began = time.monotonic()
    handles = [queue.enqueue(flow, i) for i in range(6)]
    assert [h.get_result() for h in handles] == list(range(6))
    # Six starts at two per 0.4 s need at least two full periods after the first pair.
    assert time.monotonic() - began >= 0.8
    rows = run_sql(
        db_url,
        "SELECT dequeued_at_epoch_ms FROM {p}workflow_status WHERE queue_name = 'limited'",
    )
    starts = [int(r[0]) for r in rows]
    assert len(starts) == 6
    assert most_starts_in_any_window(starts, 400) == 2


def test_queued_status_until_dequeued(dbos: type[DBOS]) -> None:
    queue = Queue("gated", concurrency=1)
    release = threading.Event()

    @DBOS.workflow()
    def blocker() -> None:
        release.wait(20)

    @DBOS.workflow()
    def later() -> str:
        return "done"

    first = queue.enqueue(blocker)
    wait_until(lambda: first.get_status().status == "PENDING", what="the blocker to start")
    waiting = queue.enqueue(later)
    status = DBOS.get_workflow_status(waiting.workflow_id)
    assert status is not None
    assert (status.status, status.queue_name) == ("ENQUEUED", "gated")
    listed = DBOS.list_queued_workflows(queue_name="gated", status="ENQUEUED")
    assert [s.workflow_id for s in listed] == [waiting.workflow_id]
    release.set()
    assert waiting.get_result() == "done"


def test_enqueue_in_a_workflow_is_a_child_enqueued_once(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("children")
    child_runs: list[int] = []

    @DBOS.workflow()
    def child(x: int) -> int:
        child_runs.append(x)
        return x * 10

    @DBOS.workflow()
    def parent(x: int) -> int:
        handle = queue.enqueue(child, x)
        return handle.get_result() + 1

    with SetWorkflowID("parent-1"):
        assert parent(4) == 41
    status = DBOS.get_workflow_status("parent-1-1")
    assert status is not None
    assert (status.parent_workflow_id, status.queue_name, status.output) == (
        "parent-1",
        "children",
        40,
    )
    steps = DBOS.list_workflow_steps("parent-1")
    assert steps[0]["child_workflow_id"] == "parent-1-1"

    # Replay the parent (as after a crash): its enqueue is recorded, so nothing is enqueued.
    mark_pending(db_url, "parent-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("parent-1").get_result() == 41
    rows = run_sql(db_url, "SELECT COUNT(*) FROM {p}workflow_status WHERE name LIKE '%child'")
    assert rows[0][0] == 1
    assert child_runs == [4]


def test_recovered_queued_workflow_runs_and_counts(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("recovering", concurrency=1)
    runs: list[str] = []

    @DBOS.workflow()
    def flow(label: str) -> str:
        runs.append(label)
        return label

    with SetWorkflowID("q-recover"):
        assert queue.enqueue(flow, "a").get_result() == "a"
    # As if this process had died after claiming it: PENDING on the queue, owned by us.
    mark_pending(db_url, "q-recover")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("q-recover").get_result() == "a"
    assert runs == ["a", "a"]
