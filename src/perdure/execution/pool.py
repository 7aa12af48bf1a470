"""A bounded pool of daemon threads that run workflows in the background."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from perdure.logs import get_logger

logger = get_logger(__name__)


class WorkerPool:
    """Runs submitted callables on at most ``max_threads`` daemon threads.

    Daemon threads, unlike ``ThreadPoolExecutor``'s, never hold up interpreter exit: a workflow
    still running when the process exits is left PENDING and resumed by the next launch, exactly
    as after a crash.
    """

    def __init__(self, max_threads: int, *, name: str) -> None:
        self._max_threads = max_threads
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._stopped = False

    def submit(self, task: Callable[[], None]) -> None:
        """Queue ``task``; start a thread if none is idle and the bound allows."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the Perdure worker pool is stopped (DBOS.destroy was called)")
            if self._idle == 0 and len(self._threads) < self._max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle > 0 else 0
        self._tasks.put(task)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except BaseException:  # a task's failure must not kill the worker thread
                logger.exception("Unhandled error in background workflow task")
            with self._lock:
                self._idle += 1

    def stop(self, timeout_sec: float) -> None:
        """Ask every thread to exit once its current task ends; wait at most ``timeout_sec``."""
        with self._lock:
            self._stopped = True
            threads = list(self._threads)
        for _ in threads:
            self._tasks.put(None)
        for thread in threads:
            thread.join(timeout=timeout_sec / max(1, len(threads)))
