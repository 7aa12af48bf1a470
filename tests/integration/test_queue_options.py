"""Enqueue options on both backends: priority, deduplication, delay and partitions."""

from __future__ import annotations

import threading
import time

import pytest

from perdure import DBOS, Queue, SetEnqueueOptions, SetWorkflowID, WorkflowStatusString
from perdure.error import DBOSException, DBOSQueueDeduplicatedError
from tests.fixtures.app import wait_until
from tests.integration.queue_timeline import Timeline
from tests.integration.system_tables import run_sql


def test_priority_lower_first_then_fifo(dbos: type[DBOS]) -> None:
    # No priority_enabled: as in DBOS, every queue honours priorities.
    queue = Queue("prio", concurrency=1, worker_concurrency=1)
    release = threading.Event()
    order: list[str] = []

    @DBOS.workflow()
    def blocker() -> None:
        release.wait(20)

    @DBOS.workflow()
    def job(label: str) -> None:
        order.append(label)

    first = queue.enqueue(blocker)
    wait_until(lambda: first.get_status().status == "PENDING", what="the blocker to start")
    handles = []
    for label, priority in [("a", 3), ("b", 1), ("c", 2), ("d", 1), ("e", 3)]:
        with SetEnqueueOptions(priority=priority):
            handles.append(queue.enqueue(job, label))
    handles.append(queue.enqueue(job, "none"))  # no priority: 0, before every other
    assert {h.get_status().priority for h in handles} == {0, 1, 2, 3}
    release.set()
    for handle in handles:
        handle.get_result()
    assert order == ["none", "b", "d", "c", "a", "e"]


def test_deduplication_id_is_refused_while_unfinished(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("dedup")
    release = threading.Event()

    @DBOS.workflow()
    def flow(x: int) -> int:
        release.wait(20)
        return x

    with SetEnqueueOptions(deduplication_id="user-1"):
        first = queue.enqueue(flow, 1)
    with (
        pytest.raises(DBOSQueueDeduplicatedError, match="user-1") as caught,
        SetEnqueueOptions(deduplication_id="user-1"),
    ):
        queue.enqueue(flow, 2)
    assert (caught.value.queue_name, caught.value.deduplication_id) == ("dedup", "user-1")
    rows = run_sql(db_url, "SELECT COUNT(*) FROM {p}workflow_status")
    assert rows[0][0] == 1  # nothing written for the refused enqueue
    with SetEnqueueOptions(deduplication_id="user-2"):  # another ID is fine
        other = queue.enqueue(flow, 3)
    release.set()
    assert (first.get_result(), other.get_result()) == (1, 3)
    with SetEnqueueOptions(deduplication_id="user-1"):  # free again once the first finished
        assert queue.enqueue(flow, 4).get_result() == 4


def test_options_apply_to_every_enqueue_in_the_block(dbos: type[DBOS]) -> None:
    queue = Queue("block")
    release = threading.Event()

    @DBOS.workflow()
    def flow(x: int) -> int:
        release.wait(30)
        return x

    @DBOS.workflow()
    def parent() -> int:
        # Enqueued by a workflow the block started: not covered by the caller's block.
        return int(queue.enqueue(flow, 10).get_result())

    with SetEnqueueOptions(priority=5):
        first = queue.enqueue(flow, 1)
        second = queue.enqueue(flow, 2)
    assert (first.get_status().priority, second.get_status().priority) == (5, 5)
    with SetEnqueueOptions(deduplication_id="one-per-block"):
        queue.enqueue(flow, 3)
        with pytest.raises(DBOSQueueDeduplicatedError):
            queue.enqueue(flow, 4)  # the same deduplication ID, as in DBOS
    with SetEnqueueOptions(priority=7), SetWorkflowID("block-parent"):
        handle = Queue("parents").enqueue(parent)
    release.set()
    assert handle.get_result() == 10
    assert (first.get_result(), second.get_result()) == (1, 2)
    [child] = DBOS.list_workflows(queue_name="block", workflow_id_prefix="block-parent")
    assert (handle.get_status().priority, child.priority) == (7, 0)


def test_a_start_inside_a_block_of_queue_options_is_refused(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def flow(x: int) -> int:
        return x

    for option in ({"deduplication_id": "d"}, {"priority": 5}, {"queue_partition_key": "k"},
                   {"delay_seconds": 30.0}):  # fmt: skip
        with SetEnqueueOptions(**option), SetWorkflowID(f"refused-{len(str(option))}"):
            with pytest.raises(DBOSException, match=f"{next(iter(option))}=.*not being enqueued"):
                DBOS.start_workflow(flow, 1)
            with pytest.raises(DBOSException, match="not being enqueued"):
                flow(1)
    assert DBOS.list_workflows() == []  # refused before anything was recorded
    with SetEnqueueOptions(app_version="v2"), SetWorkflowID("pinned"):
        assert flow(2) == 2  # an option a start can honour is not refused: it is kept
    pinned = DBOS.get_workflow_status("pinned")
    assert pinned is not None
    assert pinned.app_version == "v2"


def test_delayed_enqueue_does_not_start_before_its_delay(dbos: type[DBOS]) -> None:
    queue = Queue("delayed")
    started: list[float] = []

    @DBOS.workflow()
    def flow() -> None:
        started.append(time.monotonic())

    @DBOS.workflow()
    def prompt() -> None:
        pass

    began = time.monotonic()
    with SetEnqueueOptions(delay_seconds=0.6):
        handle = queue.enqueue(flow)
    # Reported DELAYED until its time (as DBOS 3.4 does), and listed so.
    assert handle.get_status().status == WorkflowStatusString.DELAYED
    queue.enqueue(prompt).get_result()  # the queue is served meanwhile; the delayed one waits
    assert handle.get_status().status == "DELAYED"
    delayed = [w.workflow_id for w in DBOS.list_workflows(status="DELAYED")]
    enqueued = [w.workflow_id for w in DBOS.list_workflows(status="ENQUEUED")]
    assert (delayed, enqueued) == ([handle.workflow_id], [])
    assert [w.workflow_id for w in DBOS.list_queued_workflows()] == [handle.workflow_id]
    handle.get_result()
    assert started[0] - began >= 0.6
    # Woken for its time, not after an idle back-off of several polling intervals.
    assert started[0] - began < 2.5


def test_partitioned_queue_limits_each_partition(dbos: type[DBOS]) -> None:
    queue = Queue("tenants", concurrency=1, partition_queue=True)
    release = threading.Event()
    timeline = Timeline()

    @DBOS.workflow()
    def flow(tenant: str, i: int) -> None:
        label = f"{tenant}{i}"
        timeline.start(label, tenant)
        release.wait(20)
        timeline.end(label)

    handles = []
    for i in range(2):
        for tenant in ("a", "b"):
            with SetEnqueueOptions(queue_partition_key=tenant):
                handles.append(queue.enqueue(flow, tenant, i))
    # One workflow per partition runs at once: both partitions' first ones, side by side.
    wait_until(lambda: sorted(timeline.started()) == ["a0", "b0"], what="a0 and b0 to run together")
    release.set()
    for handle in handles:
        handle.get_result()
    assert timeline.max_overlap("a") == 1
    assert timeline.max_overlap("b") == 1
    assert sorted(timeline.started()) == ["a0", "a1", "b0", "b1"]
