"""Scenario (d): how soon a blocked ``recv`` / ``get_event`` returns once the other side acts.

Each iteration uses a fresh workflow and makes sure the waiter is already blocked before acting:

- send -> recv: a receiver workflow is started in the background; a step right before its
  ``recv`` sets a `threading.Event`; the measuring code waits for it, lets ``SETTLE_SEC`` pass
  (so ``recv`` has checked for messages and is sleeping), notes ``t0 = perf_counter()`` and calls
  ``DBOS.send(id, t0)``. The workflow computes ``perf_counter()`` at ``recv``'s return minus
  ``t0``: the send call itself is included.
- set_event -> get_event: a setter workflow waits in a step for a go signal; the measuring
  thread calls ``DBOS.get_event(id, key)`` and blocks; a timer releases the setter after
  ``SETTLE_SEC``; the setter calls ``set_event(key, perf_counter())``; the latency is
  ``perf_counter()`` at ``get_event``'s return minus that value.

In-process: everything in the worker. Cross-process (PostgreSQL only): the workflows run in a
helper process (`benchmarks.helper`) on the same database; the worker sends / waits.
``perf_counter`` is CLOCK_MONOTONIC on Linux, the same clock in every process.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from benchmarks.helper import Helper
from benchmarks.workloads import EVENT_KEY, SIGNAL_TIMEOUT_SEC, WAKE_TOPIC, Workflows, go, ready

ITERATIONS = (300, 60)  # normal, --quick
WARMUP_ITERATIONS = 20
SETTLE_SEC = 0.02
# Stop a variant early past this (a polling implementation takes up to a second per iteration).
BUDGET_SEC = 60.0


def _loop(measure_once: Any, iterations: int) -> list[float]:
    for _ in range(WARMUP_ITERATIONS):
        measure_once()
    samples: list[float] = []
    deadline = time.monotonic() + BUDGET_SEC
    while len(samples) < iterations and time.monotonic() < deadline:
        samples.append(measure_once())
    return samples


def recv_in_process(api: Any, wfs: Workflows, iterations: int) -> list[float]:
    """send -> recv return (ms), receiver in this process."""

    def once() -> float:
        key = f"recv-{uuid.uuid4().hex}"
        signal = ready[key] = threading.Event()
        with api.SetWorkflowID(key):
            handle = api.DBOS.start_workflow(wfs.receiver, key)
        if not signal.wait(SIGNAL_TIMEOUT_SEC):
            raise RuntimeError(f"receiver {key} never became ready")
        time.sleep(SETTLE_SEC)
        api.DBOS.send(key, time.perf_counter(), WAKE_TOPIC)
        latency_ms = float(handle.get_result()) * 1000
        del ready[key]
        return latency_ms

    return _loop(once, iterations)


def _release_later(key: str) -> threading.Timer:
    timer = threading.Timer(SETTLE_SEC, go[key].set)
    timer.start()
    return timer


def event_in_process(api: Any, wfs: Workflows, iterations: int) -> list[float]:
    """set_event -> get_event return (ms), setter in this process."""

    def once() -> float:
        key = f"setter-{uuid.uuid4().hex}"
        go[key] = threading.Event()
        with api.SetWorkflowID(key):
            handle = api.DBOS.start_workflow(wfs.setter, key)
        timer = _release_later(key)
        value = api.DBOS.get_event(key, EVENT_KEY, SIGNAL_TIMEOUT_SEC)
        returned = time.perf_counter()
        timer.join()
        handle.get_result()
        del go[key]
        if value is None:
            raise RuntimeError(f"get_event({key}) timed out")
        return (returned - float(value)) * 1000

    return _loop(once, iterations)


def recv_cross_process(api: Any, helper: Helper, iterations: int) -> list[float]:
    """send -> recv return (ms), receiver in the helper process."""

    def once() -> float:
        helper.send("recv")
        key = helper.read()["id"]
        time.sleep(SETTLE_SEC)
        api.DBOS.send(key, time.perf_counter(), WAKE_TOPIC)
        return float(helper.read()["latency_ms"])

    return _loop(once, iterations)


def event_cross_process(api: Any, helper: Helper, iterations: int) -> list[float]:
    """set_event -> get_event return (ms), setter in the helper process."""

    def once() -> float:
        helper.send("setter")
        key = helper.read()["id"]
        timer = threading.Timer(SETTLE_SEC, helper.send, args=(f"go {key}",))
        timer.start()
        value = api.DBOS.get_event(key, EVENT_KEY, SIGNAL_TIMEOUT_SEC)
        returned = time.perf_counter()
        timer.join()
        if value is None:
            raise RuntimeError(f"get_event({key}) timed out")
        return (returned - float(value)) * 1000

    return _loop(once, iterations)


def wakeups(api: Any, impl: str, url: str, wfs: Workflows, quick: bool) -> dict[str, Any]:
    """All variants: in-process always, cross-process on PostgreSQL."""
    iterations = ITERATIONS[1 if quick else 0]
    samples: dict[str, list[float]] = {
        "recv_in_process": recv_in_process(api, wfs, iterations),
        "event_in_process": event_in_process(api, wfs, iterations),
    }
    if not url.startswith("sqlite:"):
        helper = Helper(impl, url, "bench-helper-wakeup")
        try:
            helper.wait_ready()
            samples["recv_cross_process"] = recv_cross_process(api, helper, iterations)
            samples["event_cross_process"] = event_cross_process(api, helper, iterations)
        finally:
            helper.stop()
    return {"samples_ms": samples, "iterations": iterations}
