"""`Queue` and the queue classmethods of `DBOS` (SPEC §5): declare, find, change, delete and
enqueue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from functools import partial
from typing import Any, ClassVar, TypeVar, overload

from typing_extensions import ParamSpec

from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.workflow import Invocation
from perdure.facade.base import FacadeBase
from perdure.queues.dequeue import Dequeuer
from perdure.queues.enqueue_options import EnqueueOptions
from perdure.queues.queue import (
    Declaration,
    QueueConflictResolution,
    QueueDirectory,
    QueueSpec,
    check_on_conflict,
)
from perdure.queues.settings import (
    QueueSettings,
    check_application_names,
    refuse_application_name,
)
from perdure.storage.store import Store

R = TypeVar("R")
P = ParamSpec("P")


class Queue(QueueSettings):
    """A queue of workflows with flow control, shared by every process on the database.

    Creating one declares it (before or after ``DBOS.launch()``; declaring it again with the
    same settings is a no-op); a launch stores it, and every launched process serves the
    stored queues, unless ``DBOS.listen_queues`` narrows them. Its settings can be read and
    changed at run time (`QueueSettings`).

    Args:
        name: Unique name of the queue.
        concurrency: At most this many of its workflows run at once, across all processes.
        limiter: ``{"limit": n, "period": seconds}``: at most ``n`` starts in any window of
            ``period`` seconds.
        worker_concurrency: At most this many run at once in each process.
        global_concurrency: DBOS's newer name for ``concurrency``.
        partition_concurrency: At most this many of each partition run at once, across all
            processes. Any ``partition_*`` limit partitions the queue: every enqueue names
            its partition (``SetEnqueueOptions(queue_partition_key=...)``), and the other
            limits hold over the whole queue.
        partition_worker_concurrency: At most this many of each partition run at once in
            each process.
        partition_limiter: The rate limit of each partition, like ``limiter``.
        priority_enabled: Accepted for DBOS compatibility and ignored: every queue honours
            ``SetEnqueueOptions(priority=...)`` (lower runs first; none is 0, first of all).
        partition_queue: DBOS 2.31's partitioning: every limit holds per partition.
        polling_interval_sec: How often an idle process checks for work no notification
            announced (it backs off to 5 times this while the queue stays idle).
        database_backed_queue: True: a handle on the queue stored under ``name``, declaring
            nothing (DBOS 2.31's form); every Perdure queue is stored anyway.
        client_system_database: Refused: use ``DBOSClient.retrieve_queue`` instead.
        application_name: Refused: one application per system database.

    Raises:
        ValueError: Invalid settings, or the name is taken by a queue with other settings.

    Example:
        >>> reports = Queue("reports", concurrency=2)
        >>> handle = reports.enqueue(build_report, "2024-05")
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Mapping[str, Any] | None = None,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
        database_backed_queue: bool = False,
        client_system_database: object = None,
        application_name: str | None = None,
    ) -> None:
        if client_system_database is not None:
            raise DBOSException(
                f"Queue({name!r}): client_system_database is DBOS's link to a client's "
                "database; for a queue seen from a client use "
                "DBOSClient(...).retrieve_queue(name) or register_queue."
            )
        refuse_application_name(application_name, f"Queue({name!r})")
        spec = QueueSpec.create(
            name, concurrency, limiter, worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
        )  # fmt: skip
        self._spec = spec if database_backed_queue else _facade()._declare(Declaration(spec))

    @classmethod
    def _of(cls, spec: QueueSpec) -> Queue:
        """A handle on a queue, without declaring it here."""
        queue = cls.__new__(cls)
        queue._spec = spec
        return queue

    def _stored_in(self) -> Store | None:
        dequeuer = _facade()._dequeuer()
        return None if dequeuer is None else _facade()._require_runtime().engine.store

    def _learned(self, spec: QueueSpec) -> None:
        dequeuer = _facade()._dequeuer()
        if dequeuer is not None:
            dequeuer.note(spec)

    @overload
    def enqueue(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @overload
    def enqueue(
        self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Record the workflow ENQUEUED on this queue (one round trip); a dequeue loop runs it.

        Inside a workflow the enqueued workflow is its child, enqueued exactly once.
        `SetEnqueueOptions` and `SetWorkflowID` around the call apply to it.

        Raises:
            DBOSQueueDeduplicatedError: Its deduplication ID is taken by an unfinished
                workflow of this queue; nothing was written.
        """
        return _facade().enqueue_workflow(self._spec.name, func, *args, **kwargs)

    @overload
    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]: ...

    @overload
    async def enqueue_async(
        self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]: ...

    async def enqueue_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Async twin of `enqueue`."""
        return await _facade().enqueue_workflow_async(self._spec.name, func, *args, **kwargs)


def _facade() -> type[QueueFacade]:
    # Queue objects are made before DBOS exists (at import time), so they find the facade
    # when used; perdure.dbos imports this module, hence the import here.
    from perdure.dbos import DBOS  # noqa: PLC0415

    return DBOS


class QueueFacade(FacadeBase):
    """Queues declared in code or registered at run time, and enqueueing onto them."""

    # The queues this process declared (and which queues it serves); kept across DBOS(...)
    # instances like the workflow registry, and cleared with it.
    _queues: ClassVar[QueueDirectory] = QueueDirectory()

    @classmethod
    def _invocation(
        cls, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Invocation:
        raise NotImplementedError  # provided by DBOS

    @classmethod
    def _dequeuer(cls) -> Dequeuer | None:
        """The launched dequeue loop, which stores and caches definitions; None before."""
        return None if cls._runtime is None else cls._runtime.dequeuer

    @classmethod
    def _declare(cls, declaration: Declaration, *, redefine: bool = False) -> QueueSpec:
        """Declare a queue here; once launched, store it too. Returns its settings: those
        stored now once launched (another process's, if ``on_conflict`` kept them)."""
        defined = cls._queues.define(declaration, redefine=redefine)
        dequeuer = cls._dequeuer()
        if dequeuer is None:
            return defined
        return dequeuer.adopt(Declaration(defined, declaration.on_conflict))

    @classmethod
    def register_queue(
        cls,
        name: str,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        limiter: Mapping[str, Any] | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "update_if_latest_version",
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> Queue:
        """Declare a queue at run time (before or after launch) and store it; see `Queue`.

        Once launched, the returned queue has the settings stored now. When a definition is
        already stored under ``name``, ``on_conflict`` says which settings win:
        ``"update_if_latest_version"`` (default) replaces it only from a process of the
        latest application version, so the older processes of a rolling deploy do not undo
        a newer one's settings; ``"always_update"`` always replaces it; ``"never_update"``
        keeps it. Registering the same settings again is a no-op.
        ``priority_enabled`` and ``partition_queue`` are DBOS 2.31's (see `Queue`).

        Raises:
            ValueError: Invalid settings or ``on_conflict``.
        """
        spec = QueueSpec.create(
            name, concurrency, limiter, worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
        )  # fmt: skip
        declaration = Declaration(spec, check_on_conflict(name, on_conflict))
        return Queue._of(cls._declare(declaration, redefine=True))

    @classmethod
    async def register_queue_async(
        cls,
        name: str,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, Any] | None = None,
        limiter: Mapping[str, Any] | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "update_if_latest_version",
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> Queue:
        """Async twin of `register_queue`."""
        register = partial(
            cls.register_queue, name, worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, limiter=limiter,
            polling_interval_sec=polling_interval_sec, on_conflict=on_conflict,
            concurrency=concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue,
        )  # fmt: skip
        return await asyncio.to_thread(register)

    @classmethod
    def retrieve_queue(cls, name: str) -> Queue | None:
        """The queue ``name`` as stored (by any process or client), or None if none is.

        Before launch: the queue declared here under ``name``, or None.
        """
        spec = cls._queues.get(name) if cls._dequeuer() is None else cls._stored(name)
        return None if spec is None else Queue._of(spec)

    @classmethod
    async def retrieve_queue_async(cls, name: str) -> Queue | None:
        """Async twin of `retrieve_queue`."""
        return await asyncio.to_thread(cls.retrieve_queue, name)

    @classmethod
    def list_queues(cls, *, application_name: str | list[str] | None = None) -> list[Queue]:
        """Every stored queue, by name (before launch: every queue declared here).

        ``application_name`` is accepted for DBOS compatibility: Perdure serves one
        application per system database, so every queue matches.
        """
        check_application_names(application_name, "DBOS.list_queues")
        dequeuer = cls._dequeuer()
        if dequeuer is None:
            return [Queue._of(spec) for spec in cls._queues.all()]
        records = cls._require_runtime().engine.store.list_queues()
        return [Queue._of(QueueSpec.from_record(record)) for record in records]

    @classmethod
    async def list_queues_async(
        cls, *, application_name: str | list[str] | None = None
    ) -> list[Queue]:
        """Async twin of `list_queues`."""
        return await asyncio.to_thread(partial(cls.list_queues, application_name=application_name))

    @classmethod
    def delete_queue(cls, name: str) -> None:
        """Delete the queue ``name``: its stored definition and its declaration here.

        No process serves it any more (within a second; at once on PostgreSQL); its
        unfinished workflows stay as they are, and run if the queue is registered again.
        A process that declares it in code stores it again at its next launch.
        """
        cls._queues.forget(name)
        dequeuer = cls._dequeuer()
        if dequeuer is not None:
            cls._require_runtime().engine.store.delete_queue(name)
            dequeuer.forget(name)

    @classmethod
    async def delete_queue_async(cls, name: str) -> None:
        """Async twin of `delete_queue`."""
        await asyncio.to_thread(cls.delete_queue, name)

    @classmethod
    def _stored(cls, name: str) -> QueueSpec | None:
        records = cls._require_runtime().engine.store.list_queues((name,))
        if not records:
            return None
        spec = QueueSpec.from_record(records[0])
        dequeuer = cls._dequeuer()
        if dequeuer is not None:
            dequeuer.note(spec)
        return spec

    @classmethod
    def _find_queue(cls, name: str) -> QueueSpec | None:
        """The settings an enqueue onto ``name`` is checked against: as stored (read at
        most a second ago), else as declared here."""
        dequeuer = cls._dequeuer()
        if dequeuer is None:
            return cls._queues.get(name)
        return dequeuer.known(name) or cls._queues.get(name) or cls._stored(name)

    @classmethod
    def listen_queues(cls, queues: Iterable[QueueSettings | str]) -> None:
        """Before launch: serve only these queues in this process (default: every stored one).

        Other processes still serve the rest; this one can still enqueue onto them.
        """
        if cls._dequeuer() is not None:
            raise DBOSInitializationError(
                "DBOS.listen_queues must be called before DBOS.launch(): the dequeue loop has "
                "already started serving queues."
            )
        cls._queues.listen(q.name if isinstance(q, QueueSettings) else q for q in queues)

    @classmethod
    def enqueue_workflow(
        cls, queue_name: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue ``func(*args, **kwargs)`` on the queue named ``queue_name``.

        A queue no process has declared yet is no error, as in DBOS: the workflow waits
        ENQUEUED (with a warning in the log) until a process declares the queue.

        Raises:
            DBOSException: The enqueue options do not fit the queue.
            DBOSQueueDeduplicatedError: The deduplication ID is taken on that queue.
        """
        runtime = cls._require_runtime()
        runtime.engine  # noqa: B018 - raises the "not launched" error first
        spec = cls._find_queue(queue_name)
        return runtime.enqueue_workflow(queue_name, spec, cls._invocation(func, args, kwargs))

    @classmethod
    async def enqueue_workflow_async(
        cls, queue_name: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `enqueue_workflow` (one round trip, like `start_workflow_async`)."""
        handle = cls.enqueue_workflow(queue_name, func, *args, **kwargs)
        return WorkflowHandleAsync(cls._require_runtime().engine, handle.workflow_id)

    @classmethod
    def enqueue_workflow_with_options(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue workflow ``options["workflow_name"]`` on queue ``options["queue_name"]``
        by name, as `DBOSClient.enqueue` does (the same options, the same row), from inside
        the application.

        The name is not looked up here: any process sharing the system database that
        registers it runs it (this one too, once it does). ``app_version`` is left unset
        unless given, so the workflow runs on a process of the latest application version.
        Options left out come from the enclosing `SetWorkflowID`, `SetEnqueueOptions`,
        `SetWorkflowTimeout`, `SetWorkflowAttributes` and identity, as for
        `enqueue_workflow`. Inside a workflow the enqueued workflow is its child, enqueued
        exactly once: a replay returns the recorded child.

        Raises:
            DBOSException: A missing name, or an option Perdure cannot honour (see
                `EnqueueOptions`), or one that does not fit the queue. A queue no process
                has declared yet is not an error: the workflow waits until one does.
            DBOSQueueDeduplicatedError: The deduplication ID is taken by an unfinished
                workflow (unless ``duplication_policy="return-existing"``).
            DBOSWorkflowIDInUseError: The ID exists and ``workflow_id_reuse_policy`` is
                ``"reject"``.
        """
        return cls._require_runtime().enqueue_with_options(
            options, args, kwargs, find_queue=cls._find_queue
        )

    @classmethod
    async def enqueue_workflow_with_options_async(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `enqueue_workflow_with_options` (one round trip, like
        `enqueue_workflow_async`)."""
        handle = cls.enqueue_workflow_with_options(options, *args, **kwargs)
        return WorkflowHandleAsync(cls._require_runtime().engine, handle.workflow_id)
