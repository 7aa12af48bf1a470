"""The benchmark workflows and the measurement loops of scenarios (a), (b), (e) and (g).

The workflows of (c) and (d) are registered here too (`define`), so every process of a run,
helpers included, knows all of them; their loops are in `queueing` and `wakeup`.

Everything here is written against the DBOS Transact API, passed in as a module (``dbos`` or
``perdure``), so both implementations run exactly the same code.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Iteration counts: (normal, --quick).
LATENCY_ITERATIONS = (1000, 200)
ASYNC_ITERATIONS = (500, 100)
THROUGHPUT_WORKFLOWS = (5000, 1000)
THROUGHPUT_THREADS = 8
MEMORY_WORKFLOWS = (20000, 4000)
WARMUP = 200
STEP_COUNTS = (0, 1, 10)
QUEUE_NAME = "bench_queue"
WAKE_TOPIC = "bench_wake"
EVENT_KEY = "bench_event"
SIGNAL_TIMEOUT_SEC = 60.0
ASYNC_STEP_COUNTS = (0, 10)


_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Workflows:
    """The registered benchmark workflows of one implementation."""

    steps: Callable[[int], int]  # sync workflow running ``n`` no-op steps
    async_steps: Callable[[int], Any]  # async workflow running ``n`` async no-op steps
    receiver: Callable[[str], float]  # (d): recv once; seconds from the send call to recv's return
    setter: Callable[[str], None]  # (d): on its go signal, set_event(EVENT_KEY, perf_counter())


# (d): in-process signals between the measuring code and the workflows, keyed by workflow ID.
# ``ready[id]`` is set by the receiver right before it calls recv; ``go[id]`` releases a setter.
ready: dict[str, threading.Event] = {}
go: dict[str, threading.Event] = {}


def define(api: Any) -> Workflows:
    """Register the benchmark workflows with ``api.DBOS`` (before launch)."""
    step: Callable[..., _Decorator] = api.DBOS.step
    workflow: Callable[..., _Decorator] = api.DBOS.workflow

    @step(name="bench_noop")
    def noop() -> None:
        return None

    @workflow(name="bench_steps")
    def steps(n: int) -> int:
        for _ in range(n):
            noop()
        return n

    @step(name="bench_async_noop")
    async def async_noop() -> None:
        return None

    @workflow(name="bench_async_steps")
    async def async_steps(n: int) -> int:
        for _ in range(n):
            await async_noop()
        return n

    @step(name="bench_signal_ready")
    def signal_ready(key: str) -> None:
        event = ready.get(key)
        if event is not None:
            event.set()

    @workflow(name="bench_receiver")
    def receiver(key: str) -> float:
        signal_ready(key)
        sent_at = api.DBOS.recv(WAKE_TOPIC, timeout_seconds=SIGNAL_TIMEOUT_SEC)
        received_at = time.perf_counter()
        if sent_at is None:
            raise RuntimeError(f"receiver {key}: recv timed out")
        return received_at - float(sent_at)

    @step(name="bench_wait_go")
    def wait_go(key: str) -> None:
        event = go.get(key)
        if event is None or not event.wait(SIGNAL_TIMEOUT_SEC):
            raise RuntimeError(f"setter {key}: no go signal")

    @workflow(name="bench_setter")
    def setter(key: str) -> None:
        wait_go(key)
        api.DBOS.set_event(EVENT_KEY, time.perf_counter())

    return Workflows(steps=steps, async_steps=async_steps, receiver=receiver, setter=setter)


def launch(
    impl: str, url: str, *, executor_id: str | None = None, queue: bool = False
) -> tuple[Any, Workflows, Any]:
    """Import ``impl``, register the workflows, launch on ``url`` (then register the (c) queue).

    Returns the module, the workflows and the queue (None unless asked). The queue is declared
    with ``DBOS.register_queue(name)`` after launch, with each library's defaults (no
    concurrency limit, 1 s polling interval): DBOS 3.4 only accepts that form (``Queue(...)``
    raises there) and Perdure accepts both. Every process of one run that shares a database
    gets its own ``executor_id``.
    """
    for name in ("dbos", "perdure"):
        logging.getLogger(name).setLevel(logging.WARNING)
    api = importlib.import_module(impl)
    wfs = define(api)
    config: dict[str, Any] = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    if executor_id is not None:
        config["executor_id"] = executor_id
    api.DBOS(config=config)
    api.DBOS.launch()
    bench_queue = api.DBOS.register_queue(QUEUE_NAME) if queue else None
    return api, wfs, bench_queue


def _elapsed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def sync_latencies(wfs: Workflows, iterations: int) -> dict[str, list[float]]:
    """Scenario (a): direct calls of 0-, 1- and 10-step workflows, interleaved (ms)."""
    for i in range(WARMUP):
        wfs.steps(STEP_COUNTS[i % len(STEP_COUNTS)])
    samples: dict[str, list[float]] = {str(n): [] for n in STEP_COUNTS}
    for _ in range(iterations):
        for n in STEP_COUNTS:
            start = time.perf_counter_ns()
            wfs.steps(n)
            samples[str(n)].append(_elapsed_ms(start))
    return samples


def async_latencies(wfs: Workflows, iterations: int) -> dict[str, list[float]]:
    """Scenario (e): awaited async workflows with 0 and 10 async steps, interleaved (ms)."""

    async def run() -> dict[str, list[float]]:
        for i in range(WARMUP):
            await wfs.async_steps(ASYNC_STEP_COUNTS[i % len(ASYNC_STEP_COUNTS)])
        samples: dict[str, list[float]] = {str(n): [] for n in ASYNC_STEP_COUNTS}
        for _ in range(iterations):
            for n in ASYNC_STEP_COUNTS:
                start = time.perf_counter_ns()
                await wfs.async_steps(n)
                samples[str(n)].append(_elapsed_ms(start))
        return samples

    return asyncio.run(run())


def _start_and_wait(
    api: Any, wfs: Workflows, total: int, threads: int
) -> tuple[float, list[float]]:
    """Start ``total`` 3-step workflows from ``threads`` callers, wait for every result.

    Returns the wall time in seconds (from the release of the callers to the last result) and
    the latency of each ``start_workflow`` call in ms.
    """
    barrier = threading.Barrier(threads + 1)
    start_ms: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    share = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]

    def caller(index: int) -> None:
        try:
            barrier.wait()
            handles = []
            for _ in range(share[index]):
                start = time.perf_counter_ns()
                handles.append(api.DBOS.start_workflow(wfs.steps, 3))
                start_ms[index].append(_elapsed_ms(start))
            wrong = [h.workflow_id for h in handles if h.get_result() != 3]
            if wrong:
                errors.append(RuntimeError(f"workflows {wrong[:3]} returned a wrong result"))
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            errors.append(exc)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    begin = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - begin
    if errors:
        raise errors[0]
    return seconds, [x for per_thread in start_ms for x in per_thread]


def throughput(api: Any, wfs: Workflows, total: int) -> dict[str, Any]:
    """Scenario (b): workflows/s of 3-step workflows started by 8 concurrent callers."""
    _start_and_wait(api, wfs, WARMUP, THROUGHPUT_THREADS)
    seconds, start_ms = _start_and_wait(api, wfs, total, THROUGHPUT_THREADS)
    return {
        "workflows": total,
        "threads": THROUGHPUT_THREADS,
        "seconds": seconds,
        "per_second": total / seconds,
        "start_ms": start_ms,
    }


def current_rss_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``), in MiB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(wfs: Workflows, total: int) -> dict[str, Any]:
    """Scenario (g): RSS before, halfway through and after ``total`` one-step workflows."""
    for _ in range(WARMUP):
        wfs.steps(1)
    gc.collect()
    readings = {"baseline": current_rss_mib()}
    half = total // 2
    for _ in range(half):
        wfs.steps(1)
    gc.collect()
    readings["after_half"] = current_rss_mib()
    for _ in range(total - half):
        wfs.steps(1)
    gc.collect()
    readings["after_all"] = current_rss_mib()
    return {"workflows": total, "rss_mib": readings, "peak_mib": peak_rss_mib()}
