"""One LISTEN connection per process: PostgreSQL notifications handed to a callback.

Notifications are hints that something changed ("look again"). The connection is watched:
TCP keepalives and a periodic ping detect a connection that died silently (a failover, a
network cut), and every reconnect tells the callback that notes may have been missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from perdure.logs import get_logger
from perdure.storage.postgres.connect import CONNECT_TIMEOUT_SEC, CONNECTION_OPTIONS

logger = get_logger(__name__)

CHANNEL = "perdure"
# How long one wait for notifications lasts, and how often the connection is pinged.
POLL_SEC = 0.5
PING_EVERY_SEC = 5.0
STOP_TIMEOUT_SEC = 5.0


class NotificationListener:
    """A background thread LISTENing on the ``perdure`` channel; reconnects when cut off.

    Args:
        conninfo: The libpq connection string of the system database.
        on_note: Called with each notification's payload (exceptions are logged, not fatal).
        on_gap: Called after every (re)connect and loss: notes may have been missed.
    """

    def __init__(
        self, conninfo: str, on_note: Callable[[str], None], on_gap: Callable[[], None]
    ) -> None:
        self._conninfo = conninfo
        self._on_note = on_note
        self._on_gap = on_gap
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(
            target=self._run, name="perdure-notification-listener", daemon=True
        )

    def start(self, timeout_sec: float = 10.0) -> None:
        """Start listening; wait until the first LISTEN is in place (or the timeout)."""
        self._thread.start()
        self._connected.wait(timeout_sec)

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop the thread (it notices within `POLL_SEC`)."""
        self._stop.set()
        self._thread.join(timeout_sec)

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SEC,
                    **CONNECTION_OPTIONS,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._connected.set()
                    delay = 0.05
                    self._gap()  # anything written while we were not listening
                    self._listen(conn)
            except psycopg.Error as exc:
                logger.warning("Notification listener lost its connection (%s); reconnecting", exc)
            except Exception:  # e.g. a note the driver cannot decode: this thread must live on
                logger.exception("Notification listener failed; reconnecting")
            else:
                continue  # stopped
            self.reconnects += 1
            self._gap()
            self._stop.wait(delay)  # back-off before reconnecting
            delay = min(delay * 2, 2.0)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        pinged = time.monotonic()
        while not self._stop.is_set():
            for note in conn.notifies(timeout=POLL_SEC):
                self._deliver(note.payload)
            if time.monotonic() - pinged >= PING_EVERY_SEC:
                conn.execute("SELECT 1")  # a dead connection raises here instead of idling
                pinged = time.monotonic()

    def _deliver(self, payload: str) -> None:
        try:
            self._on_note(payload)
        except Exception:  # one bad note must not end every wake-up of this process
            logger.exception("Could not handle notification %r; ignored", payload[:200])

    def _gap(self) -> None:
        try:
            self._on_gap()
        except Exception:
            logger.exception("Notification gap handler failed")
