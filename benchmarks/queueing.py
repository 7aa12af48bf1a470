"""Scenario (c): queue throughput with 1 and with 4 processes serving the queue.

The measuring worker declares the queue ``bench_queue`` (each library's defaults: no
concurrency limit, 1 s polling interval) and launches; with ``processes=4`` it then starts 3
helper processes (`benchmarks.helper`, each with its own executor ID) that launch on the same
database and serve the same queue, so 4 processes dequeue in all. After a warm-up of 200 queued
workflows, it enqueues 5,000 workflows of 3 no-op steps from one thread and waits for every
handle's result. Workflows/s: from the first enqueue to the last result.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import psycopg

from benchmarks.helper import Helper
from benchmarks.workloads import WARMUP, Workflows

QUEUE_WORKFLOWS = (5000, 1000)  # normal, --quick
PROCESS_COUNTS = (1, 4)


def _enqueue_and_wait(queue: Any, wfs: Workflows, total: int) -> tuple[float, float, list[float]]:
    """Seconds to the last result, seconds spent enqueueing, each enqueue call's ms."""
    enqueue: Callable[..., Any] = queue.enqueue
    handles = []
    enqueue_ms: list[float] = []
    begin = time.perf_counter()
    for _ in range(total):
        start = time.perf_counter_ns()
        handles.append(enqueue(wfs.steps, 3))
        enqueue_ms.append((time.perf_counter_ns() - start) / 1e6)
    enqueued = time.perf_counter() - begin
    wrong = [h.workflow_id for h in handles if h.get_result() != 3]
    seconds = time.perf_counter() - begin
    if wrong:
        raise RuntimeError(f"queued workflows {wrong[:3]} returned a wrong result")
    return seconds, enqueued, enqueue_ms


def _executors(impl: str, url: str) -> dict[str, int]:
    """How many workflows of the queue each executor ran (a check that all processes served)."""
    schema = "perdure" if impl == "perdure" else "dbos"
    query = "SELECT executor_id, count(*) FROM {t} WHERE queue_name = 'bench_queue' GROUP BY 1"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(query.format(t="workflow_status")).fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as pg:
            rows = pg.execute(query.format(t=f"{schema}.workflow_status")).fetchall()
    return {str(executor): int(count) for executor, count in rows}


def queue_throughput(
    impl: str, url: str, queue: Any, wfs: Workflows, *, processes: int, quick: bool
) -> dict[str, Any]:
    """Workflows/s through the queue with ``processes`` processes serving it."""
    total = QUEUE_WORKFLOWS[1 if quick else 0]
    helpers = [Helper(impl, url, f"bench-helper-{i}", queue=True) for i in range(1, processes)]
    try:
        for helper in helpers:
            helper.wait_ready()
        _enqueue_and_wait(queue, wfs, WARMUP)
        seconds, enqueued, enqueue_ms = _enqueue_and_wait(queue, wfs, total)
    finally:
        for helper in helpers:
            helper.stop()
    return {
        "processes": processes,
        "workflows": total,
        "seconds": seconds,
        "per_second": total / seconds,
        "enqueue_seconds": enqueued,
        "enqueue_ms": enqueue_ms,
        "executors": _executors(impl, url),
    }
