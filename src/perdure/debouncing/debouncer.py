"""`Debouncer`: one execution of a workflow per burst of calls, in a launched process."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from typing_extensions import ParamSpec

from perdure.dbos import DBOS
from perdure.debouncing.window import (
    Bounce,
    Window,
    bounce_once,
    check_timeout,
    refuse_owned_options,
    settle,
)
from perdure.error import DBOSException
from perdure.execution.context import (
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    take_enqueue_options,
    take_next_options,
)
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.registry import RegisteredWorkflow
from perdure.facade.queues import Queue
from perdure.queues.dequeue import queue_channel
from perdure.queues.queue import INTERNAL_QUEUE_NAME, QueueSpec
from perdure.runtime import invocation

P = ParamSpec("P")
R = TypeVar("R")

# The name a bounce is recorded under in the workflow that debounces.
BOUNCE_STEP_NAME = "DBOS.debounce"


def refuse_application_name(application_name: str | None, owner: str) -> None:
    """Perdure keeps one application per system database, so a debounce cannot act for
    another one (DBOS's ``application_name``).

    Raises:
        DBOSException: ``application_name`` is set.
    """
    if application_name is not None:
        raise DBOSException(
            f"{owner}(application_name={application_name!r}) is not supported: Perdure keeps "
            "one application per system database, so a debounce always acts for the "
            "application that runs on it. Remove application_name."
        )


class Debouncer(Generic[P, R]):
    """Runs a workflow once per burst of calls with the same key: with the arguments of the
    burst's last call, ``debounce_period_sec`` after it.

    The first call for a key opens a window: it enqueues the workflow (DELAYED by the period)
    holding the deduplication ID ``"<workflow name>-<key>"`` on its queue. Each later call,
    from this process or any other, replaces its arguments and restarts the period, until
    the window closes: when the workflow's start time comes, or ``debounce_timeout_sec`` after
    the window's first call (each caller applies its own). A call after that opens the next
    window, even while the previous workflow runs. Every call of one window returns a handle
    to the same workflow. It is all in the database: a call survives its caller's crash, and
    whichever process serves the queue runs the workflow.

    Anything else holding the deduplication ID on the queue (another workflow whose name and
    key spell the same ID, or an enqueue without a delay) makes a call raise
    `DBOSQueueDeduplicatedError`; a delayed enqueue of this workflow under it counts as a
    window.

    Args:
        workflow_name: The registered name of the workflow (`create` finds it for you).
        debounce_timeout_sec: A burst's workflow starts at the latest this long after the
            burst's first call, however often the period is restarted (None or 0: no limit).
        queue: The queue (or its name) the workflow runs on; by default an internal queue
            every launched process serves.
        application_name: DBOS's; Perdure accepts only None.

    Raises:
        DBOSException: ``application_name`` is set.
        ValueError: A negative ``debounce_timeout_sec``.

    Example:
        >>> debouncer = Debouncer.create(reindex, debounce_timeout_sec=60)
        >>> handle = debouncer.debounce(f"user-{user_id}", 5.0, user_id)
    """

    def __init__(
        self,
        workflow_name: str,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        refuse_application_name(application_name, "Debouncer")
        self.workflow_name = workflow_name
        self.debounce_timeout_sec = check_timeout(debounce_timeout_sec)
        self.queue_name = queue.name if isinstance(queue, Queue) else queue

    @staticmethod
    def create(
        workflow: Callable[P, R],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer of the ``@DBOS.workflow`` function ``workflow`` (see `Debouncer`).

        Raises:
            TypeError: ``workflow`` is a bound method (debounce functions only, as in DBOS).
            DBOSException: ``workflow`` is not a workflow.
        """
        return Debouncer(
            _workflow_name(workflow),
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )

    @staticmethod
    def create_async(
        workflow: Callable[P, Coroutine[Any, Any, R]],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """`create` for an async workflow, typed for `debounce_async`."""
        return Debouncer(
            _workflow_name(workflow),
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Call the workflow with these arguments, ``debounce_period_sec`` from now, unless
        another call with ``debounce_key`` comes first (then that one's arguments win).

        ``SetWorkflowID`` names a new burst's workflow; ``SetWorkflowTimeout`` and
        ``SetEnqueueOptions(app_version=...)`` apply to it. Inside a workflow each bounce and
        enqueue is recorded, so a replay returns the same handle and changes nothing.

        Raises:
            DBOSException: An option the debounce owns is set (deduplication ID, delay,
                priority, partition key, duplication or ID-reuse policy), or the workflow or
                queue is unknown.
            DBOSQueueDeduplicatedError: The key is held by another workflow's colliding key
                or by a plain enqueue with the same deduplication ID.
            ValueError: An empty key or a negative period.
        """
        pinned = take_next_options()
        given = take_enqueue_options()
        refuse_owned_options(
            deduplication_id=given.deduplication_id,
            delay_seconds=given.delay_seconds,
            priority=given.priority,
            queue_partition_key=given.queue_partition_key,
            duplication_policy=given.duplication_policy,
            reuse_policy=pinned.reuse_policy,
        )
        runtime = DBOS._require_runtime()
        engine = runtime.engine
        spec = self._queue()
        window = Window.create(
            self.workflow_name,
            spec.name,
            debounce_key,
            period_sec=debounce_period_sec,
            timeout_sec=self.debounce_timeout_sec,
        )
        call = invocation(self._workflow(), args, kwargs)
        inputs = engine.payloads.encode(
            {"args": call.args, "kwargs": call.kwargs},
            what=f"input of workflow {self.workflow_name!r}",
        )

        def bounce() -> Bounce:
            kind, workflow_id = bounce_once(
                engine.store, window.request(inputs, engine.payloads.format)
            )
            engine.notifier.signal(queue_channel(spec.name))  # its start time may be sooner
            return kind, workflow_id

        def recorded_bounce() -> Bounce:
            kind, workflow_id = DBOS.run_step({"name": BOUNCE_STEP_NAME}, bounce)
            return kind, workflow_id

        def enqueue(workflow_id: str) -> str:
            with (
                SetWorkflowID(workflow_id),
                # Its own timeout or none: not the deadline of a workflow debouncing it.
                SetWorkflowTimeout(pinned.timeout_seconds if pinned.has_timeout else None),
                SetEnqueueOptions(
                    deduplication_id=window.deduplication_id,
                    delay_seconds=window.first_delay_sec(),
                    app_version=given.app_version,
                    duplication_policy="return-existing",
                ),
            ):
                return runtime.enqueue_workflow(spec.name, spec, call).workflow_id

        workflow_id = settle(
            window, bounce=recorded_bounce, enqueue=enqueue, pinned_id=pinned.workflow_id
        )
        return WorkflowHandle(engine, workflow_id)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Async twin of `debounce`."""
        handle = await asyncio.to_thread(
            self.debounce, debounce_key, debounce_period_sec, *args, **kwargs
        )
        return WorkflowHandleAsync(DBOS._require_runtime().engine, handle.workflow_id)

    def _workflow(self) -> RegisteredWorkflow:
        entry = DBOS._registry.workflows.get(self.workflow_name)
        if entry is None:
            raise DBOSException(
                f"Cannot debounce workflow {self.workflow_name!r}: no @DBOS.workflow of that "
                "name is registered in this process. Import the module that defines it."
            )
        return entry

    def _queue(self) -> QueueSpec:
        if self.queue_name is None:
            return QueueSpec(INTERNAL_QUEUE_NAME)
        spec = DBOS._find_queue(self.queue_name)
        if spec is None:
            raise DBOSException(
                f"Cannot debounce onto queue {self.queue_name!r}: no such queue. Define it "
                f"with Queue({self.queue_name!r}, ...) or DBOS.register_queue first."
            )
        return spec


def _workflow_name(workflow: Callable[..., Any]) -> str:
    if isinstance(workflow, types.MethodType):
        raise TypeError("Only workflow functions may be debounced, not methods")
    entry: RegisteredWorkflow | None = getattr(workflow, "__perdure_workflow__", None)
    if entry is None:
        raise DBOSException(
            f"{getattr(workflow, '__qualname__', workflow)!r} is not a workflow: decorate it "
            "with @DBOS.workflow() before creating a Debouncer for it."
        )
    return entry.name
