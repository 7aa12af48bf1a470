"""A queue's settings as DBOS's `Queue` exposes them: read from and changed in the system
database, so every process sees them (and its dequeue loop applies them) alike."""

from __future__ import annotations

import asyncio
from typing import Any

from perdure.error import DBOSException
from perdure.queues.queue import QueueSpec
from perdure.storage.store import Store


class QueueSettings:
    """The settings of one queue: properties, ``get_*_async`` getters and ``set_*`` setters.

    Once the queue is stored, each read returns the stored setting (another process may have
    changed it) and each change is stored in one transaction, checked against the others as
    a new definition would be; before that (before launch) reads return the declared
    settings. Under DBOS 2.31's ``partition_queue=True`` (no ``partition_*`` limit) every limit
    holds per partition: ``global_concurrency``, ``worker_concurrency`` and ``limiter`` read
    None, the ``partition_*`` properties read ``concurrency``, ``worker_concurrency`` and
    ``limiter``, and only ``set_concurrency`` changes a limit.
    """

    _spec: QueueSpec  # the settings last read or declared

    # -- where the queue is stored (subclasses) ----------------------------------------------------

    def _stored_in(self) -> Store | None:
        """The store holding the queue's definition; None before launch."""
        raise NotImplementedError

    def _learned(self, spec: QueueSpec) -> None:
        """Called with the stored definition whenever it is read or changed here."""

    # -- reading and changing ------------------------------------------------------------------

    def _current(self) -> QueueSpec:
        store = self._stored_in()
        if store is not None:
            found = store.list_queues((self._spec.name,))
            if found:  # not stored (deleted): the settings last known
                self._spec = QueueSpec.from_record(found[0])
                self._learned(self._spec)
        return self._spec

    async def _current_async(self) -> QueueSpec:
        return await asyncio.to_thread(self._current)

    def _set(self, setting: str, value: Any) -> None:
        store = self._stored_in()
        if store is None:
            raise DBOSException(
                f"Queue.set_{setting} changes the setting stored in the system database, so "
                "it needs a launched DBOS (call DBOS.launch() first). Before launch, declare "
                "the queue with the setting instead."
            )
        name = self._spec.name
        changed = store.change_queue(
            name, lambda record: QueueSpec.from_record(record).changed(setting, value).record()
        )
        if changed is None:
            raise DBOSException(
                f"Cannot set {setting} of queue {name!r}: it is not stored in the system "
                "database (it was deleted). Register it again first."
            )
        self._spec = QueueSpec.from_record(changed)
        self._learned(self._spec)

    async def _set_async(self, setting: str, value: Any) -> None:
        await asyncio.to_thread(self._set, setting, value)

    # -- identity --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._spec.name

    @property
    def application_name(self) -> str | None:
        """The application owning the queue: always None (one application per database)."""
        return None

    @property
    def database_backed_queue(self) -> bool:
        """True: every Perdure queue is stored in the system database (at launch, if declared
        before), and its settings can be changed there."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._spec})"

    # -- reading ---------------------------------------------------------------------------------

    @property
    def concurrency(self) -> int | None:
        """Running workflows allowed at once across all processes (None: no limit); per
        partition under ``partition_queue=True``. DBOS 3.4 deprecates it for
        ``global_concurrency``."""
        return self._current().concurrency

    @property
    def global_concurrency(self) -> int | None:
        """Running workflows of the whole queue allowed at once across all processes."""
        return _whole(self._current())[0]

    @property
    def worker_concurrency(self) -> int | None:
        """Running workflows of the whole queue allowed at once in each process."""
        return _whole(self._current())[1]

    @property
    def limiter(self) -> dict[str, float] | None:
        """Starts of the whole queue allowed per period: ``{"limit": n, "period": seconds}``."""
        return _whole(self._current())[2]

    @property
    def partition_concurrency(self) -> int | None:
        """Running workflows of each partition allowed at once across all processes."""
        return _per_partition(self._current())[0]

    @property
    def partition_worker_concurrency(self) -> int | None:
        """Running workflows of each partition allowed at once in each process."""
        return _per_partition(self._current())[1]

    @property
    def partition_limiter(self) -> dict[str, float] | None:
        """Starts of each partition allowed per period: ``{"limit": n, "period": seconds}``."""
        return _per_partition(self._current())[2]

    @property
    def priority_enabled(self) -> bool:
        """As declared; every queue honours priorities whatever it says (DBOS 2.31 flag)."""
        return self._current().priority_enabled

    @property
    def partition_queue(self) -> bool:
        """Whether the queue is partitioned (by ``partition_*`` limits or ``partition_queue``)."""
        return self._current().partitioned

    @property
    def polling_interval_sec(self) -> float:
        """How often an idle process looks for work no notification announced."""
        return self._current().polling_interval_sec

    async def get_concurrency_async(self) -> int | None:
        """Async twin of `concurrency`."""
        return (await self._current_async()).concurrency

    async def get_global_concurrency_async(self) -> int | None:
        """Async twin of `global_concurrency`."""
        return _whole(await self._current_async())[0]

    async def get_worker_concurrency_async(self) -> int | None:
        """Async twin of `worker_concurrency`."""
        return _whole(await self._current_async())[1]

    async def get_limiter_async(self) -> dict[str, float] | None:
        """Async twin of `limiter`."""
        return _whole(await self._current_async())[2]

    async def get_partition_concurrency_async(self) -> int | None:
        """Async twin of `partition_concurrency`."""
        return _per_partition(await self._current_async())[0]

    async def get_partition_worker_concurrency_async(self) -> int | None:
        """Async twin of `partition_worker_concurrency`."""
        return _per_partition(await self._current_async())[1]

    async def get_partition_limiter_async(self) -> dict[str, float] | None:
        """Async twin of `partition_limiter`."""
        return _per_partition(await self._current_async())[2]

    async def get_priority_enabled_async(self) -> bool:
        """Async twin of `priority_enabled`."""
        return (await self._current_async()).priority_enabled

    async def get_partition_queue_async(self) -> bool:
        """Async twin of `partition_queue`."""
        return (await self._current_async()).partitioned

    async def get_polling_interval_sec_async(self) -> float:
        """Async twin of `polling_interval_sec`."""
        return (await self._current_async()).polling_interval_sec

    # -- changing (every process's dequeue loop applies a change at its next claim) ------------

    def set_concurrency(self, value: int | None) -> None:
        """Change `concurrency` (per partition under ``partition_queue=True``).

        Raises:
            ValueError: Not a positive integer or None, or below another limit it bounds.
            DBOSException: Not launched, or the queue is not stored.
        """
        self._set("concurrency", value)

    def set_global_concurrency(self, value: int | None) -> None:
        """Change `global_concurrency` (refused under ``partition_queue=True``)."""
        self._set("global_concurrency", value)

    def set_worker_concurrency(self, value: int | None) -> None:
        """Change `worker_concurrency` (refused under ``partition_queue=True``)."""
        self._set("worker_concurrency", value)

    def set_limiter(self, value: dict[str, float] | None) -> None:
        """Change `limiter` (refused under ``partition_queue=True``)."""
        self._set("limiter", value)

    def set_partition_concurrency(self, value: int | None) -> None:
        """Change `partition_concurrency`; the queue is partitioned while any partition
        limit is set (refused under ``partition_queue=True``)."""
        self._set("partition_concurrency", value)

    def set_partition_worker_concurrency(self, value: int | None) -> None:
        """Change `partition_worker_concurrency` (see `set_partition_concurrency`)."""
        self._set("partition_worker_concurrency", value)

    def set_partition_limiter(self, value: dict[str, float] | None) -> None:
        """Change `partition_limiter` (see `set_partition_concurrency`)."""
        self._set("partition_limiter", value)

    def set_polling_interval_sec(self, value: float) -> None:
        """Change `polling_interval_sec`."""
        self._set("polling_interval_sec", value)

    def set_priority_enabled(self, value: bool) -> None:
        """Change the stored `priority_enabled` flag (DBOS 2.31; priorities work anyway)."""
        self._set("priority_enabled", value)

    def set_partition_queue(self, value: bool) -> None:
        """Switch DBOS 2.31's ``partition_queue`` form on or off (refused while a
        ``partition_*`` limit is set: clear those instead)."""
        self._set("partition_queue", value)

    async def set_concurrency_async(self, value: int | None) -> None:
        """Async twin of `set_concurrency`."""
        await self._set_async("concurrency", value)

    async def set_global_concurrency_async(self, value: int | None) -> None:
        """Async twin of `set_global_concurrency`."""
        await self._set_async("global_concurrency", value)

    async def set_worker_concurrency_async(self, value: int | None) -> None:
        """Async twin of `set_worker_concurrency`."""
        await self._set_async("worker_concurrency", value)

    async def set_limiter_async(self, value: dict[str, float] | None) -> None:
        """Async twin of `set_limiter`."""
        await self._set_async("limiter", value)

    async def set_partition_concurrency_async(self, value: int | None) -> None:
        """Async twin of `set_partition_concurrency`."""
        await self._set_async("partition_concurrency", value)

    async def set_partition_worker_concurrency_async(self, value: int | None) -> None:
        """Async twin of `set_partition_worker_concurrency`."""
        await self._set_async("partition_worker_concurrency", value)

    async def set_partition_limiter_async(self, value: dict[str, float] | None) -> None:
        """Async twin of `set_partition_limiter`."""
        await self._set_async("partition_limiter", value)

    async def set_polling_interval_sec_async(self, value: float) -> None:
        """Async twin of `set_polling_interval_sec`."""
        await self._set_async("polling_interval_sec", value)

    async def set_priority_enabled_async(self, value: bool) -> None:
        """Async twin of `set_priority_enabled`."""
        await self._set_async("priority_enabled", value)

    async def set_partition_queue_async(self, value: bool) -> None:
        """Async twin of `set_partition_queue`."""
        await self._set_async("partition_queue", value)


_Limits = tuple[int | None, int | None, dict[str, float] | None]


def _whole(spec: QueueSpec) -> _Limits:
    """(global concurrency, worker concurrency, limiter) over the whole queue."""
    if spec.every_limit_per_partition:
        return None, None, None
    return spec.concurrency, spec.worker_concurrency, spec.limiter


def _per_partition(spec: QueueSpec) -> _Limits:
    """(concurrency, worker concurrency, limiter) over each partition."""
    if spec.every_limit_per_partition:
        return spec.concurrency, spec.worker_concurrency, spec.limiter
    return spec.partition_concurrency, spec.partition_worker_concurrency, spec.partition_limiter


def refuse_application_name(application_name: object, where: str) -> None:
    """Refuse DBOS's queue owner: Perdure serves one application per system database."""
    if application_name is not None:
        raise DBOSException(
            f"{where}: application_name={application_name!r} is not supported: Perdure runs "
            "one application per system database and records no owner of a queue. Remove it."
        )


def check_application_names(application_name: object, where: str) -> None:
    """Check `list_queues`'s filter: every queue belongs to every application (one per
    database, none recorded), so any names match every queue."""
    if application_name is None or isinstance(application_name, str):
        return
    if isinstance(application_name, (list, tuple)) and all(
        isinstance(name, str) for name in application_name
    ):
        return
    raise TypeError(
        f"{where}: application_name must be a string or a list of strings, got {application_name!r}"
    )
