"""A pool of daemon threads that run workflows, where a workflow blocked in a wait holds no slot."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from perdure.logs import get_logger

logger = get_logger(__name__)

Task = Callable[[], None]


class WorkerPool:
    """Runs submitted callables, FIFO, with at most ``max_threads`` of them running unblocked.

    A task wraps each wait (a durable sleep, a ``recv``, a child's result) in :meth:`blocked`,
    which gives its slot to the next queued task; on wake-up it carries on at once, even past
    ``max_threads``, since waiting for a slot then could deadlock a parent behind its own child.
    Threads grow as needed; those beyond ``max_threads`` exit after ``idle_timeout_sec`` idle.

    Daemon threads, unlike ``ThreadPoolExecutor``'s, never hold up interpreter exit: a workflow
    still running when the process exits is left PENDING and resumed by the next launch, exactly
    as after a crash.
    """

    def __init__(self, max_threads: int, *, name: str, idle_timeout_sec: float = 30.0) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self._max_threads = max_threads
        self._name = name
        self._idle_timeout_sec = idle_timeout_sec
        self._cond = threading.Condition()
        self._queued: deque[Task] = deque()  # submitted, not yet given a slot
        self._handed: deque[Task] = deque()  # given a slot, waiting for an idle thread to take
        self._active = 0  # tasks holding a slot: running outside blocked(), or in _handed
        self._idle = 0  # idle threads not yet owed a task from _handed
        self._threads: set[threading.Thread] = set()
        self._spawned = 0
        self._stopped = False
        self._local = threading.local()  # on this pool's workers: .depth of blocked() nesting

    def submit(self, task: Task) -> None:
        """Queue ``task``; it starts once fewer than ``max_threads`` tasks run unblocked.

        Raises:
            RuntimeError: the pool was stopped.
        """
        with self._cond:
            if self._stopped:
                raise RuntimeError("the Perdure worker pool is stopped (DBOS.destroy was called)")
            self._queued.append(task)
            self._dispatch()

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        """Release the calling task's slot while the ``with`` body waits; reclaim it on exit.

        Nested sections count once. On a thread that is not one of this pool's workers (a user
        calling a workflow directly, another pool's worker) it does nothing.
        """
        depth: int | None = getattr(self._local, "depth", None)
        if depth is None:
            yield
            return
        self._local.depth = depth + 1
        if depth == 0:
            with self._cond:
                self._active -= 1
                self._dispatch()
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                with self._cond:
                    self._active += 1  # never wait for a slot here: see the class docstring

    def available(self) -> int:
        """How many more tasks could start now: ``max_threads`` minus running and queued ones."""
        with self._cond:
            return max(0, self._max_threads - self._active - len(self._queued))

    def running(self) -> int:
        """How many tasks hold a slot: started (or starting) and not inside ``blocked()``."""
        with self._cond:
            return self._active

    def stop(self, timeout_sec: float) -> None:
        """Start no more tasks; let running ones finish, waiting at most ``timeout_sec`` in all."""
        with self._cond:
            self._stopped = True
            # Dropping tasks not yet started loses nothing: each is a durable workflow, left
            # PENDING in the database, that recovery resumes on the next launch.
            self._queued.clear()
            self._active -= len(self._handed)
            self._idle += len(self._handed)
            self._handed.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=timeout_sec / max(1, len(threads)))

    def _dispatch(self) -> None:
        """Give free slots to queued tasks, on idle threads first (caller holds the lock)."""
        while self._queued and self._active < self._max_threads:  # empty once stopped
            task = self._queued.popleft()
            self._active += 1
            if self._idle > 0:
                self._idle -= 1
                self._handed.append(task)
                self._cond.notify()
            else:
                name = f"{self._name}-{self._spawned}"
                self._spawned += 1
                thread = threading.Thread(target=self._work, args=(task,), name=name, daemon=True)
                self._threads.add(thread)
                thread.start()

    def _work(self, first: Task) -> None:
        self._local.depth = 0
        task: Task | None = first
        while task is not None:
            try:
                task()
            except BaseException:  # a task's failure must not kill the worker thread
                logger.exception("Unhandled error in background workflow task")
            task = self._next_task()

    def _next_task(self) -> Task | None:
        """Free this thread's slot and wait for the next task; None when the thread should exit."""
        with self._cond:
            self._active -= 1
            if self._queued:  # take the next one ourselves: no hand-off
                self._active += 1
                return self._queued.popleft()
            self._idle += 1
            deadline = time.monotonic() + self._idle_timeout_sec
            while True:
                # Whoever wakes first takes a handed task: _idle already counts it as taken.
                if self._handed:
                    return self._handed.popleft()
                remaining = deadline - time.monotonic()
                if self._stopped or (remaining <= 0 and len(self._threads) > self._max_threads):
                    self._idle -= 1
                    self._threads.discard(threading.current_thread())  # now, so others count right
                    return None
                self._cond.wait(remaining if remaining > 0 else self._idle_timeout_sec)
