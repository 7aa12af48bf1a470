"""Partitioned queues on both backends: DBOS 3.4's partition limits (per partition) beside the
queue-wide ones, and DBOS 2.31's ``partition_queue=True`` (every limit per partition)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from perdure import DBOS, Queue, SetEnqueueOptions
from perdure.error import DBOSException
from perdure.queues.limits import most_starts_in_any_window
from tests.fixtures.app import wait_until
from tests.integration.queue_timeline import Timeline
from tests.integration.system_tables import run_sql


def _blocking_job(timeline: Timeline, release: threading.Event):  # type: ignore[no-untyped-def]
    """A workflow that records its run under its tenant and waits for ``release``."""

    @DBOS.workflow()
    def job(tenant: str, i: int) -> str:
        label = f"{tenant}{i}"
        timeline.start(label, tenant)
        release.wait(20)
        timeline.end(label)
        return label

    return job


def _enqueue_per_tenant(queue: Queue, job: object, tenants: str, each: int) -> list[object]:
    handles = []
    for i in range(each):
        for tenant in tenants:
            with SetEnqueueOptions(queue_partition_key=tenant):
                handles.append(queue.enqueue(job, tenant, i))  # type: ignore[arg-type]
    return handles


def test_partition_concurrency_per_partition_and_global_concurrency_over_the_queue(
    dbos: type[DBOS],
) -> None:
    queue = DBOS.register_queue("tenants", global_concurrency=3, partition_concurrency=1)
    assert (queue.partition_queue, queue.global_concurrency, queue.partition_concurrency) == (
        True, 3, 1,
    )  # fmt: skip
    release, timeline = threading.Event(), Timeline()
    job = _blocking_job(timeline, release)
    handles = _enqueue_per_tenant(queue, job, "abcd", 2)
    # Four tenants could each run one, but the whole queue runs three at most.
    wait_until(lambda: timeline.running() == 3, what="three tenants' first jobs to run")
    statuses = Counter(h.get_status().status for h in handles)  # type: ignore[attr-defined]
    assert (statuses["PENDING"], statuses["ENQUEUED"]) == (3, 5)
    release.set()
    assert sorted(h.get_result() for h in handles) == sorted(  # type: ignore[attr-defined]
        f"{t}{i}" for t in "abcd" for i in range(2)
    )
    assert timeline.max_overlap() == 3
    assert [timeline.max_overlap(t) for t in "abcd"] == [1, 1, 1, 1]


def test_worker_concurrency_over_the_queue_and_per_partition(dbos: type[DBOS]) -> None:
    queue = DBOS.register_queue("workers", worker_concurrency=2, partition_worker_concurrency=1)
    release, timeline = threading.Event(), Timeline()
    job = _blocking_job(timeline, release)
    handles = _enqueue_per_tenant(queue, job, "abc", 2)
    wait_until(lambda: timeline.running() == 2, what="two jobs to run")
    statuses = Counter(h.get_status().status for h in handles)  # type: ignore[attr-defined]
    assert statuses["PENDING"] == 2
    assert {timeline.running(t) for t in "abc"} == {0, 1}
    release.set()
    for handle in handles:
        handle.get_result()  # type: ignore[attr-defined]
    assert timeline.max_overlap() == 2
    assert [timeline.max_overlap(t) for t in "abc"] == [1, 1, 1]


def test_the_limiter_of_a_partitioned_queue_counts_every_partitions_starts(
    dbos: type[DBOS], db_url: str
) -> None:
    queue = DBOS.register_queue(
        "paced", limiter={"limit": 2, "period": 0.4}, partition_limiter={"limit": 2, "period": 60}
    )

    @DBOS.workflow()
    def job(tenant: str, i: int) -> str:
        return f"{tenant}{i}"

    handles = _enqueue_per_tenant(queue, job, "abc", 2)
    assert len({h.get_result() for h in handles}) == 6  # type: ignore[attr-defined]
    rows = run_sql(
        db_url,
        "SELECT queue_partition_key, dequeued_at_epoch_ms FROM {p}workflow_status "
        "WHERE queue_name = 'paced'",
    )
    starts = [int(r[1]) for r in rows]
    # Two per 0.4 s over the whole queue, though each partition alone allows two per minute.
    assert most_starts_in_any_window(starts, 400) == 2
    assert Counter(r[0] for r in rows) == {"a": 2, "b": 2, "c": 2}


def test_partition_queue_true_applies_every_limit_per_partition(dbos: type[DBOS]) -> None:
    # DBOS 2.31's form: concurrency=1 is one per partition, and nothing holds over the queue.
    queue = Queue("legacy", concurrency=1, partition_queue=True)
    assert (queue.concurrency, queue.global_concurrency, queue.partition_concurrency) == (
        1, None, 1,
    )  # fmt: skip
    release, timeline = threading.Event(), Timeline()
    job = _blocking_job(timeline, release)
    handles = _enqueue_per_tenant(queue, job, "abc", 2)
    wait_until(lambda: timeline.running() == 3, what="every tenant's first job to run")
    statuses = Counter(h.get_status().status for h in handles)  # type: ignore[attr-defined]
    assert statuses["PENDING"] == 3
    release.set()
    for handle in handles:
        handle.get_result()  # type: ignore[attr-defined]
    assert [timeline.max_overlap(t) for t in "abc"] == [1, 1, 1]
    # Limits over the whole queue would change the meaning of the others: refused.
    with pytest.raises(DBOSException, match="partition_queue=True"):
        queue.set_global_concurrency(2)
    queue.set_concurrency(2)  # still per partition
    assert (queue.partition_concurrency, queue.global_concurrency) == (2, None)


def test_the_partition_key_must_fit_how_the_queue_is_partitioned(dbos: type[DBOS]) -> None:
    parted = DBOS.register_queue("parted", partition_worker_concurrency=1)
    plain = DBOS.register_queue("plain")

    @DBOS.workflow()
    def job() -> None:
        pass

    with pytest.raises(DBOSException, match="partitioned: enqueue inside"):
        parted.enqueue(job)
    with (
        pytest.raises(DBOSException, match="not partitioned"),
        SetEnqueueOptions(queue_partition_key="k"),
    ):
        plain.enqueue(job)
    # Partitioned at run time: enqueues follow the stored definition.
    plain.set_partition_concurrency(1)
    with SetEnqueueOptions(queue_partition_key="k"):
        plain.enqueue(job).get_result()
