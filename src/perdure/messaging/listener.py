"""One LISTEN connection per process turns PostgreSQL notifications into local wake-ups."""

from __future__ import annotations

import base64
import threading

import psycopg

from perdure.execution.notifier import Notifier
from perdure.logs import get_logger
from perdure.storage.interface import Payload

logger = get_logger(__name__)

CHANNEL = "perdure"


def wake_up(note: str) -> tuple[str, Payload | None]:
    """The local channel a notification wakes, and the message it carries if any.

    Most notifications are a channel name. A hand-off's is "recv|<workflow>|<position>|<format>|
    <base64 message>" (the last two empty when the message was too long to carry): the
    receiver's channel is its first three fields.
    """
    if not note.startswith("recv|"):
        return note, None
    name, serialization, data = note.rsplit("|", 2)
    if not serialization:
        return name, None
    return name, Payload(base64.b64decode(data), serialization)


class NotificationListener:
    """A background thread LISTENing on the ``perdure`` channel; reconnects when cut off."""

    def __init__(self, conninfo: str, notifier: Notifier) -> None:
        self._conninfo = conninfo
        self._notifier = notifier
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="perdure-notification-listener", daemon=True
        )

    def start(self, timeout_sec: float = 10.0) -> None:
        """Start listening; wait until the first LISTEN is in place (or the timeout)."""
        self._thread.start()
        self._connected.wait(timeout_sec)

    def stop(self, timeout_sec: float = 5.0) -> None:
        """Stop the thread (it notices within half a second)."""
        self._stop.set()
        self._thread.join(timeout_sec)

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._connected.set()
                    delay = 0.05
                    # Anything written while we were not listening: every waiter re-checks.
                    self._notifier.signal_all()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._notifier.signal(*wake_up(note.payload))
            except psycopg.Error as exc:
                logger.warning("Notification listener lost its connection (%s); reconnecting", exc)
                self._notifier.signal_all()
                self._stop.wait(delay)  # back-off before reconnecting
                delay = min(delay * 2, 2.0)
