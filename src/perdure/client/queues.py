"""`DBOSClient`'s queue definitions: register, find, list and delete queues, and change their
settings, from a process that runs no workflows."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Any, NoReturn

from perdure.client.connected import ClientParts
from perdure.error import DBOSException
from perdure.queues.queue import (
    REPLACE_EXISTING,
    QueueConflictResolution,
    QueueSpec,
    check_on_conflict,
)
from perdure.queues.settings import (
    QueueSettings,
    check_application_names,
    refuse_application_name,
)
from perdure.storage.store import Store


class ClientQueue(QueueSettings):
    """A queue seen from a `DBOSClient`: its stored settings, read and changed in the system
    database (see `QueueSettings`). Enqueue onto it with `DBOSClient.enqueue`."""

    def __init__(self, store: Store, spec: QueueSpec) -> None:
        self._store = store
        self._spec = spec

    def _stored_in(self) -> Store:
        return self._store

    def enqueue(self, func: Any, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused, as in DBOS: a client enqueues by workflow name with `DBOSClient.enqueue`."""
        raise DBOSException(
            f"Cannot enqueue on queue {self.name!r} from a client's Queue object: use "
            f"DBOSClient.enqueue({{'queue_name': {self.name!r}, 'workflow_name': ...}}, ...)."
        )

    async def enqueue_async(self, func: Any, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: see `enqueue`."""
        self.enqueue(func, *args, **kwargs)


class ClientQueues(ClientParts):
    """The queue definitions of the client's system database."""

    def register_queue(
        self,
        name: str,
        *,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        limiter: Mapping[str, Any] | None = None,
        worker_concurrency: int | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "always_update",
        application_name: str | None = None,
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> ClientQueue:
        """Store a queue definition; the application's processes serve it from then on.

        The settings are `DBOS.register_queue`'s. ``on_conflict`` says what happens to a
        definition already stored under ``name``: ``"always_update"`` (default) replaces it,
        ``"never_update"`` keeps it; ``"update_if_latest_version"`` is refused, as in DBOS (a
        client runs no application version). Returns the queue with the settings stored now.

        Raises:
            ValueError: Invalid settings or ``on_conflict``.
            DBOSException: ``"update_if_latest_version"``, or an ``application_name``.
        """
        policy = check_on_conflict(name, on_conflict)
        if policy == "update_if_latest_version":
            raise DBOSException(
                "DBOSClient.register_queue cannot use on_conflict='update_if_latest_version': "
                "a client runs no application version. Use 'always_update' or 'never_update'."
            )
        refuse_application_name(application_name, "DBOSClient.register_queue")
        spec = QueueSpec.create(
            name, concurrency, limiter, worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
        )  # fmt: skip
        stored = self._store.save_queue(spec.record(), replace_existing=REPLACE_EXISTING[policy])
        return ClientQueue(self._store, QueueSpec.from_record(stored))

    async def register_queue_async(
        self,
        name: str,
        *,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        limiter: Mapping[str, Any] | None = None,
        worker_concurrency: int | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "always_update",
        application_name: str | None = None,
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> ClientQueue:
        """Async twin of `register_queue`."""
        register = partial(
            self.register_queue, name, global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, limiter=limiter,
            worker_concurrency=worker_concurrency, polling_interval_sec=polling_interval_sec,
            on_conflict=on_conflict, application_name=application_name,
            concurrency=concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue,
        )  # fmt: skip
        return await asyncio.to_thread(register)

    def retrieve_queue(self, name: str) -> ClientQueue | None:
        """The queue stored under ``name``, or None."""
        found = self._store.list_queues((name,))
        return ClientQueue(self._store, QueueSpec.from_record(found[0])) if found else None

    async def retrieve_queue_async(self, name: str) -> ClientQueue | None:
        """Async twin of `retrieve_queue`."""
        return await asyncio.to_thread(self.retrieve_queue, name)

    def list_queues(self, *, application_name: str | list[str] | None = None) -> list[ClientQueue]:
        """Every stored queue, by name (``application_name``: see `DBOS.list_queues`)."""
        check_application_names(application_name, "DBOSClient.list_queues")
        return [
            ClientQueue(self._store, QueueSpec.from_record(record))
            for record in self._store.list_queues()
        ]

    async def list_queues_async(
        self, *, application_name: str | list[str] | None = None
    ) -> list[ClientQueue]:
        """Async twin of `list_queues`."""
        return await asyncio.to_thread(partial(self.list_queues, application_name=application_name))

    def delete_queue(self, name: str) -> None:
        """Delete the queue's definition (see `DBOS.delete_queue`); nothing if none is stored."""
        self._store.delete_queue(name)

    async def delete_queue_async(self, name: str) -> None:
        """Async twin of `delete_queue`."""
        await asyncio.to_thread(self.delete_queue, name)
