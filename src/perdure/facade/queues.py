"""`Queue` and the queue classmethods of `DBOS` (SPEC §5): define, find and enqueue."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar, TypeVar, overload

from typing_extensions import ParamSpec

from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.workflow import Invocation
from perdure.facade.base import FacadeBase
from perdure.queues.queue import QueueDirectory, QueueSpec

R = TypeVar("R")
P = ParamSpec("P")


class Queue:
    """A queue of workflows with flow control, shared by every process on the database.

    Creating one registers it (before or after ``DBOS.launch()``); each launched process serves
    the queues it defines, unless ``DBOS.listen_queues`` narrows them.

    Args:
        name: Unique name of the queue.
        concurrency: At most this many of its workflows run at once, across all processes.
        limiter: ``{"limit": n, "period": seconds}``: at most ``n`` starts in any window of
            ``period`` seconds.
        worker_concurrency: At most this many run at once in each process.
        priority_enabled: Accepted for DBOS compatibility and ignored: every queue honours
            ``SetEnqueueOptions(priority=...)`` (lower runs first; none is 0, first of all).
        partition_queue: Apply the limits per ``SetEnqueueOptions(queue_partition_key=...)``.
        polling_interval_sec: How often an idle process checks for work no notification
            announced (it backs off to 5 times this while the queue stays idle).

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
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> None:
        spec = QueueSpec.create(
            name,
            concurrency,
            limiter,
            worker_concurrency=worker_concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
        )
        self._spec = _facade()._define(spec)

    @classmethod
    def _of(cls, spec: QueueSpec) -> Queue:
        """A handle on a queue defined elsewhere (another process), without defining it here."""
        queue = cls.__new__(cls)
        queue._spec = spec
        return queue

    def __repr__(self) -> str:
        return f"Queue({self._spec})"

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._spec.name

    @property
    def concurrency(self) -> int | None:
        """Running workflows allowed at once across all processes (None: no limit)."""
        return self._spec.concurrency

    @property
    def worker_concurrency(self) -> int | None:
        """Running workflows allowed at once per process (None: no limit)."""
        return self._spec.worker_concurrency

    @property
    def limiter(self) -> dict[str, float] | None:
        """The rate limit, ``{"limit": n, "period": seconds}``, or None."""
        return self._spec.limiter

    @property
    def priority_enabled(self) -> bool:
        """Whether enqueue priorities are honoured."""
        return self._spec.priority_enabled

    @property
    def partition_queue(self) -> bool:
        """Whether limits apply per partition key."""
        return self._spec.partition_queue

    @property
    def polling_interval_sec(self) -> float:
        """How often an idle process looks for work no notification announced."""
        return self._spec.polling_interval_sec

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

    # The queues this process defined (and which of them it serves); kept across DBOS(...)
    # instances like the workflow registry, and cleared with it.
    _queues: ClassVar[QueueDirectory] = QueueDirectory()

    @classmethod
    def _invocation(
        cls, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Invocation:
        raise NotImplementedError  # provided by DBOS

    @classmethod
    def _define(cls, spec: QueueSpec) -> QueueSpec:
        defined = cls._queues.define(spec)
        runtime = cls._runtime
        if runtime is not None and runtime.dequeuer is not None:
            runtime.dequeuer.adopt(defined)
        return defined

    @classmethod
    def register_queue(
        cls,
        name: str,
        *,
        concurrency: int | None = None,
        global_concurrency: int | None = None,
        worker_concurrency: int | None = None,
        limiter: Mapping[str, Any] | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> Queue:
        """Define a queue at run time (before or after launch); the same as ``Queue(...)``.

        ``global_concurrency`` is another name for ``concurrency``. Registering a queue again
        with the same settings returns it; other settings raise ``ValueError``.
        """
        if (
            concurrency is not None
            and global_concurrency is not None
            and concurrency != global_concurrency
        ):
            raise ValueError(
                f"Queue {name!r}: concurrency={concurrency} and global_concurrency="
                f"{global_concurrency} disagree; they are the same setting, so pass only one."
            )
        return Queue(
            name,
            concurrency if concurrency is not None else global_concurrency,
            limiter,
            worker_concurrency=worker_concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
        )

    @classmethod
    def retrieve_queue(cls, name: str) -> Queue | None:
        """The queue ``name``: defined in this process, or stored by another; else None."""
        spec = cls._find_queue(name)
        if spec is None:
            return None
        local = cls._queues.get(name)
        return Queue._of(local if local is not None else spec)

    @classmethod
    def _find_queue(cls, name: str) -> QueueSpec | None:
        spec = cls._queues.get(name)
        if spec is None and cls._runtime is not None and cls._runtime.dequeuer is not None:
            return cls._runtime.stored_queue(name)
        return spec

    @classmethod
    def listen_queues(cls, queues: Iterable[Queue | str]) -> None:
        """Before launch: serve only these queues in this process (default: all it defines).

        Other processes still serve the rest; this one can still enqueue onto them.
        """
        if cls._runtime is not None and cls._runtime.dequeuer is not None:
            raise DBOSInitializationError(
                "DBOS.listen_queues must be called before DBOS.launch(): the dequeue loop has "
                "already started serving queues."
            )
        cls._queues.listen(q.name if isinstance(q, Queue) else q for q in queues)

    @classmethod
    def enqueue_workflow(
        cls, queue_name: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue ``func(*args, **kwargs)`` on the queue named ``queue_name``.

        Raises:
            DBOSException: No queue has that name, or the enqueue options do not fit it.
            DBOSQueueDeduplicatedError: The deduplication ID is taken on that queue.
        """
        runtime = cls._require_runtime()
        runtime.engine  # noqa: B018 - raises the "not launched" error first
        spec = cls._find_queue(queue_name)
        if spec is None:
            raise DBOSException(
                f"Cannot enqueue onto queue {queue_name!r}: no such queue. Define it with "
                f"Queue({queue_name!r}, ...) or DBOS.register_queue({queue_name!r}) first."
            )
        return runtime.enqueue_workflow(spec, cls._invocation(func, args, kwargs))

    @classmethod
    async def enqueue_workflow_async(
        cls, queue_name: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `enqueue_workflow` (one round trip, like `start_workflow_async`)."""
        handle = cls.enqueue_workflow(queue_name, func, *args, **kwargs)
        return WorkflowHandleAsync(cls._require_runtime().engine, handle.workflow_id)
