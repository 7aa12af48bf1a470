"""The worker pool: slots bound unblocked tasks only, blocked() frees a slot, idle threads exit."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from perdure.execution.pool import WorkerPool

WAIT = 5.0  # seconds: generous upper bound for anything that should happen promptly
_names = itertools.count()


class Tally:
    """A thread-safe counter that tracks its peak and can be waited on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.value = 0
        self.peak = 0

    def add(self, n: int = 1) -> None:
        with self._cond:
            self.value += n
            self.peak = max(self.peak, self.value)
            self._cond.notify_all()

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.value >= n, timeout=WAIT)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; for states no event reports."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def make_pool() -> Iterator[Callable[..., WorkerPool]]:
    """Builds pools with unique names and stops them all after the test."""
    pools: list[WorkerPool] = []

    def make(max_threads: int, name: str = "", idle_timeout_sec: float = 30.0) -> WorkerPool:
        name = name or f"test-pool-{next(_names)}"
        pool = WorkerPool(max_threads, name=name, idle_timeout_sec=idle_timeout_sec)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop(timeout_sec=WAIT)


def threads_named(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"{prefix}-")]


def test_at_most_max_threads_unblocked_tasks_run(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(2)
    release = threading.Event()
    started, running, done = Tally(), Tally(), Tally()

    def task() -> None:
        started.add()
        running.add()
        release.wait(WAIT)
        running.add(-1)
        done.add()

    for _ in range(5):
        pool.submit(task)
    assert started.wait_for(2)
    assert (started.value, pool.running(), pool.available()) == (2, 2, 0)
    release.set()
    assert done.wait_for(5)
    assert running.peak == 2


def test_entering_blocked_lets_a_queued_task_start(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(1)
    release, b_started = threading.Event(), threading.Event()

    def a() -> None:
        with pool.blocked():
            release.wait(WAIT)

    pool.submit(a)
    pool.submit(b_started.set)
    assert b_started.wait(WAIT)
    release.set()


def test_three_hundred_blocked_tasks_all_start(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(4)
    release = threading.Event()
    waiting, done = Tally(), Tally()

    def task() -> None:
        with pool.blocked():
            waiting.add()
            release.wait(WAIT)
        done.add()

    for _ in range(300):
        pool.submit(task)
    assert waiting.wait_for(300)
    assert pool.running() == 0
    release.set()
    assert done.wait_for(300)


def test_parent_waiting_in_blocked_for_its_child_completes(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(1)
    child_done, parent_done = threading.Event(), threading.Event()
    results: list[str] = []

    def parent() -> None:
        pool.submit(lambda: (results.append("child"), child_done.set()))
        with pool.blocked():
            assert child_done.wait(WAIT)
        results.append("parent")
        parent_done.set()

    pool.submit(parent)
    assert parent_done.wait(WAIT)
    assert results == ["child", "parent"]


def test_a_woken_task_continues_when_the_pool_is_full(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(1)
    in_wait, wake, continued = threading.Event(), threading.Event(), threading.Event()
    b_started, release = threading.Event(), threading.Event()

    def a() -> None:
        with pool.blocked():
            in_wait.set()
            wake.wait(WAIT)
        continued.set()
        release.wait(WAIT)

    def b() -> None:
        b_started.set()
        release.wait(2 * WAIT)  # outlasts the wait for `continued` below

    pool.submit(a)
    assert in_wait.wait(WAIT)
    pool.submit(b)
    assert b_started.wait(WAIT)
    assert pool.running() == 1
    wake.set()
    assert continued.wait(WAIT)
    assert pool.running() == 2  # over max_threads, on purpose
    release.set()


def test_nested_blocked_sections_count_once(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(1)
    seen: list[int] = []
    done = threading.Event()

    def task() -> None:
        seen.append(pool.running())
        with pool.blocked():
            seen.append(pool.running())
            with pool.blocked():
                seen.append(pool.running())
            seen.append(pool.running())
        seen.append(pool.running())
        done.set()

    pool.submit(task)
    assert done.wait(WAIT)
    assert seen == [1, 0, 0, 0, 1]


def test_blocked_off_the_pools_workers_is_a_no_op(make_pool: Callable[..., WorkerPool]) -> None:
    pool, other = make_pool(1), make_pool(1)
    holding, release, other_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def hold() -> None:
        holding.set()
        release.wait(WAIT)

    def on_other_pool() -> None:
        with pool.blocked():
            seen.append(pool.running())
        other_done.set()

    pool.submit(hold)
    assert holding.wait(WAIT)
    with pool.blocked():  # on the test's own thread
        seen.append(pool.running())
    other.submit(on_other_pool)
    assert other_done.wait(WAIT)
    assert seen == [1, 1]
    assert (pool.running(), pool.available()) == (1, 0)
    release.set()


def test_available_and_running(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(3)
    release = threading.Event()
    started = Tally()
    assert (pool.running(), pool.available()) == (0, 3)

    def task() -> None:
        started.add()
        release.wait(WAIT)

    pool.submit(task)
    pool.submit(task)
    assert (pool.running(), pool.available()) == (2, 1)
    pool.submit(task)
    pool.submit(task)
    assert (pool.running(), pool.available()) == (3, 0)
    assert started.wait_for(3)
    release.set()
    assert started.wait_for(4)
    assert wait_until(lambda: pool.running() == 0)
    assert pool.available() == 3


def test_stop_drops_queued_tasks_joins_and_rejects_submits(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(1, name="stopping-pool")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    queued_ran = threading.Event()

    def task() -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    pool.submit(task)
    assert started.wait(WAIT)
    pool.submit(queued_ran.set)
    release.set()
    pool.stop(timeout_sec=WAIT)
    assert finished.is_set()
    assert threads_named("stopping-pool") == []
    assert not queued_ran.is_set()
    with pytest.raises(RuntimeError, match="stopped"):
        pool.submit(queued_ran.set)


def test_a_failing_task_is_logged_and_its_thread_serves_on(
    make_pool: Callable[..., WorkerPool], caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(1)
    ran_on: list[str] = []
    done = threading.Event()

    def fail() -> None:
        ran_on.append(threading.current_thread().name)
        raise ValueError("boom")

    def after() -> None:
        ran_on.append(threading.current_thread().name)
        done.set()

    with caplog.at_level(logging.ERROR, logger="perdure.execution.pool"):
        pool.submit(fail)
        pool.submit(after)
        assert done.wait(WAIT)
    assert ran_on[0] == ran_on[1]
    [record] = [r for r in caplog.records if r.name == "perdure.execution.pool"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


def test_idle_threads_beyond_max_exit(make_pool: Callable[..., WorkerPool]) -> None:
    prefix = "idle-pool"
    pool = make_pool(1, name=prefix, idle_timeout_sec=0.05)
    release = threading.Event()
    waiting, done = Tally(), Tally()

    def task() -> None:
        with pool.blocked():
            waiting.add()
            release.wait(WAIT)
        done.add()

    for _ in range(3):
        pool.submit(task)
    assert waiting.wait_for(3)
    assert sorted(threads_named(prefix)) == [f"{prefix}-{n}" for n in range(3)]
    release.set()
    assert done.wait_for(3)
    assert wait_until(lambda: len(threads_named(prefix)) == 1)
