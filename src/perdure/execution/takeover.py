"""Heartbeats of this process, and takeover of the PENDING workflows of processes that stop.

Every launched process records itself in the ``executors`` table and refreshes its heartbeat
every ``heartbeat_interval_sec``. A process silent for ``dead_executor_timeout_sec`` is dead:
the first live process to notice claims each of its PENDING workflows (compare-and-set on the
dead owner, so two takers never both get one), moves it to its own executor and resumes it
from its recorded steps. No control plane is involved: the database is the only shared state.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from perdure.execution.recovery import restart_workflows
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.interface import ExecutorRecord, ExecutorStore

logger = get_logger(__name__)

STOP_TIMEOUT_SEC = 5.0


class Heartbeat:
    """Beats for this process and takes over the workflows of dead ones.

    A process judges others only after it has itself beaten without a failure for a whole
    timeout: after a database outage every process was silent for a while, and none may take
    the others' work before they had the chance to beat again.
    """

    def __init__(
        self,
        engine: WorkflowEngine,
        store: ExecutorStore,
        *,
        interval_sec: float,
        dead_after_sec: float,
    ) -> None:
        self._engine = engine
        self._store = store
        self._interval_sec = interval_sec
        self._dead_after_sec = dead_after_sec
        self._record = ExecutorRecord(
            instance_id=engine.instance_id,
            executor_id=engine.executor_id,
            app_version=engine.app_version,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=0,  # the database's clock fills in both times
            heartbeat_at=0,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perdure-heartbeat", daemon=True)

    def start(self) -> None:
        """Record this process at once (a crash right after launch is then detectable)."""
        self._store.beat(self._record)
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop beating. The row stays: if workflows are left PENDING, the next launch of this
        executor recovers them, or, once the row is stale, another process takes them over."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_sec)

    def _run(self) -> None:
        beating_since: float | None = time.monotonic()
        while not self._stop.wait(self._interval_sec):
            try:
                self._store.beat(self._record)
            except Exception as exc:  # noqa: BLE001 - the database is away: beat again later
                logger.warning("Heartbeat failed (%s); retrying in %.1fs", exc, self._interval_sec)
                beating_since = None
                continue
            now = time.monotonic()
            if beating_since is None:
                beating_since = now
            elif now - beating_since >= self._dead_after_sec:
                try:
                    self.take_over_dead()
                except Exception:
                    logger.exception("Takeover of dead executors failed; retried next heartbeat")

    def take_over_dead(self) -> None:
        """Resume here the PENDING workflows of every silent process."""
        silent_ms = round(self._dead_after_sec * 1000)
        store, engine = self._store, self._engine
        for instance in store.dead_instances(silent_for_ms=silent_ms, exclude=engine.instance_id):
            pending = store.pending_of_instance(instance)
            restarted = restart_workflows(engine, pending, take_over=True)
            if restarted:
                logger.warning(
                    "Took over %d PENDING workflow(s) of process %s, silent for more than %.0fs",
                    len(restarted),
                    instance,
                    self._dead_after_sec,
                )
            store.forget_instance(instance, silent_for_ms=silent_ms)
