"""What a `DBOSClient` builds on its system database: at construction, or first use if lazy."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from perdure.client.connection import open_client_store
from perdure.error import DBOSException
from perdure.execution.notifier import Notifier
from perdure.management import WorkflowManager
from perdure.messaging.operations import Messaging
from perdure.messaging.wakeups import WakeUps
from perdure.serialization import Payloads
from perdure.storage.store import Listening, Store


@dataclass(frozen=True)
class Connected:
    """A connected client's parts: its store and what works through it."""

    store: Store
    manager: WorkflowManager
    messaging: Messaging
    # Wakes the client's waits on PostgreSQL notifications; None on SQLite, where they poll.
    listener: Listening | None

    def close(self) -> None:
        """Stop the listener, then close the store's connections."""
        if self.listener is not None:
            self.listener.stop()
        self.store.close()


class ClientParts:
    """The base of `DBOSClient` and its mixins: the parts each of them works with.

    ``_payloads`` and ``_notifier`` need no database. ``_store``, ``_manager`` and
    ``_messaging`` do: the client connects at construction, or, if lazy, on the first use
    of one of them (once, however many threads get there together).

    Args:
        url: The system database URL (see `open_client_store`).
        beside: Whether ``url`` may be a DBOS 2.x application database URL.
        payloads: How the client reads and writes payloads.
        notifier: Wakes the client's waits.
        lazy: Connect on first use instead of now.

    Raises:
        DBOSInitializationError: Unless lazy: see `open_client_store`.
    """

    def __init__(
        self, url: str, *, beside: bool, payloads: Payloads, notifier: Notifier, lazy: bool
    ) -> None:
        self._url = url
        self._beside = beside
        self._payloads = payloads
        self._notifier = notifier
        self._connect_lock = threading.Lock()
        self._destroyed = False
        self._connected: Connected | None = None
        if not lazy:
            self._connected = self._open(connect_wait_sec=None)

    # Each part is one attribute check once connected.

    @property
    def _store(self) -> Store:
        return (self._connected or self._connect()).store

    @property
    def _manager(self) -> WorkflowManager:
        return (self._connected or self._connect()).manager

    @property
    def _messaging(self) -> Messaging:
        return (self._connected or self._connect()).messaging

    def _connect(self, *, connect_wait_sec: float | None = None) -> Connected:
        """The client's parts, connecting first if no thread has yet.

        Args:
            connect_wait_sec: How long to wait for a server that is down or starting;
                None: as long as the constructor of an eager client waits.

        Raises:
            DBOSException: The client was destroyed before it ever connected.
            DBOSInitializationError: See `open_client_store`.
        """
        with self._connect_lock:
            if self._connected is None:
                if self._destroyed:
                    raise DBOSException(
                        "This DBOSClient was destroyed before it ever connected: create a new one."
                    )
                self._connected = self._open(connect_wait_sec=connect_wait_sec)
            return self._connected

    def _open(self, *, connect_wait_sec: float | None) -> Connected:
        store = open_client_store(self._url, beside=self._beside, connect_wait_sec=connect_wait_sec)
        try:
            listener = store.listen(WakeUps(self._notifier), self._notifier.signal_all)
        except BaseException:
            store.close()
            raise
        return Connected(
            store=store,
            manager=WorkflowManager(store, self._payloads),
            messaging=Messaging(store, self._payloads, self._notifier),
            listener=listener,
        )

    def _disconnect(self) -> None:
        """Close the connections, if the client ever opened them; it connects no more."""
        with self._connect_lock:
            self._destroyed = True
            connected = self._connected
        if connected is not None:
            connected.close()
