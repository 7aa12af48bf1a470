"""This process's proof of life: its lock and heartbeats, on a thread and connection of their own.

Nothing else runs on this thread and nothing else uses its connection, so a busy process (every
pool connection taken, a takeover of thousands of workflows, a slow statement) still beats.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from perdure.logs import get_logger
from perdure.storage.records import ExecutorRecord, new_owner_token
from perdure.storage.store import Liveness, Store

logger = get_logger(__name__)

STOP_TIMEOUT_SEC = 5.0
# While the lock is not held (just after a reconnect, when a session of ours the server has
# not yet seen die still holds it), try again this often: the lock proves us alive.
RETAKE_LOCK_SEC = 0.2
# After a failed beat, back off from this up to `MAX_RETRY_SEC`: when the database comes
# back, this process must hold its lock again well within the others' confirmation window.
FIRST_RETRY_SEC = 0.05
MAX_RETRY_SEC = 0.5
WARN_EVERY_SEC = 10.0


class Heartbeat:
    """Holds this process's lock and refreshes its ``executors`` row every interval."""

    def __init__(
        self,
        store: Store,
        *,
        instance_id: str,
        executor_id: str,
        app_version: str,
        interval_sec: float,
        workflow_names: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        """``workflow_names`` tells which workflows this process registers (recorded with
        its heartbeats, refreshed when it changes: a process may register more after launch)."""
        self._workflow_names = workflow_names
        self.record = ExecutorRecord(
            instance_id=instance_id,
            executor_id=executor_id,
            app_version=app_version,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=0,  # the database's clock fills in both times
            heartbeat_at=0,
            lock_key=new_owner_token(),
            workflow_names=self._registered(),
        )
        self._liveness: Liveness = store.open_liveness(self.record)
        self._interval_sec = interval_sec
        self._stop = threading.Event()
        self._state = threading.Lock()
        self._beating_since: float | None = None
        self._lock_held = False
        self._thread = threading.Thread(target=self._run, name="perdure-heartbeat", daemon=True)

    def start(self) -> None:
        """Take the lock and record this process at once (a crash right after launch is then
        detectable), then beat in the background."""
        self._beat_once()
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop beating and let go of the lock: this process no longer proves its work alive.

        The row stays; a live process takes over any workflow left PENDING here.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_sec)
        self._liveness.close()

    def beating_for(self) -> float:
        """Seconds since this process's beats last started succeeding (0 while failing)."""
        with self._state:
            since = self._beating_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def lock_held(self) -> bool:
        """Whether this process holds its lock now."""
        with self._state:
            return self._lock_held

    def _registered(self) -> str | None:
        if self._workflow_names is None:
            return None
        return json.dumps(list(self._workflow_names()))

    def _beat_once(self) -> bool:
        names = self._registered()
        if names != self.record.workflow_names:  # registered after launch: beat with them
            self.record = replace(self.record, workflow_names=names)
            self._liveness.update(self.record)
        held = self._liveness.beat()
        with self._state:
            self._lock_held = held
            if self._beating_since is None:
                self._beating_since = time.monotonic()
        return held

    def _run(self) -> None:
        delay = FIRST_RETRY_SEC
        failing_since: float | None = None
        warned = 0.0
        wait = self._interval_sec
        while not self._stop.wait(wait):
            try:
                held = self._beat_once()
            except Exception as exc:  # noqa: BLE001 - the database is away: beat again soon
                with self._state:
                    self._beating_since, self._lock_held = None, False
                now = time.monotonic()
                failing_since = failing_since or now
                if now - warned >= WARN_EVERY_SEC:
                    logger.warning(
                        "Heartbeat failing for %.0fs (%s); retrying", now - failing_since, exc
                    )
                    warned = now
                wait, delay = delay, min(delay * 2, MAX_RETRY_SEC, self._interval_sec)
                continue
            if failing_since is not None:
                logger.warning("Heartbeat back after %.1fs", time.monotonic() - failing_since)
            failing_since, delay = None, FIRST_RETRY_SEC
            wait = self._interval_sec if held else min(RETAKE_LOCK_SEC, self._interval_sec)
