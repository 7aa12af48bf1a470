"""`DebouncerClient`: `Debouncer` for processes that do not run workflows (a `DBOSClient`)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from perdure.client import (
    ClientWorkflowHandle,
    ClientWorkflowHandleAsync,
    DBOSClient,
    EnqueueOptions,
)
from perdure.debouncing.debouncer import refuse_application_name
from perdure.debouncing.window import (
    Bounce,
    Window,
    bounce_once,
    check_timeout,
    refuse_owned_options,
    settle,
)
from perdure.error import DBOSException
from perdure.execution.context import take_next_options
from perdure.facade.queues import Queue


class DebouncerClient:
    """Debounces a workflow by name through a `DBOSClient`, with `Debouncer`'s semantics.

    Calls from clients and from launched processes debounce together when they name the same
    workflow, key and queue.

    Args:
        client: The client whose system database holds the workflow.
        workflow_options: The `EnqueueOptions` of the workflow (``workflow_name`` and
            ``queue_name`` at least); ``workflow_id`` names a new burst's workflow.
        debounce_timeout_sec: A burst's workflow starts at the latest this long after the
            burst's first call (None or 0: no limit).
        queue: The queue (or its name) to use instead of ``workflow_options["queue_name"]``.
        application_name: DBOS's; Perdure accepts only None.

    Raises:
        DBOSException: ``application_name`` is set.
        ValueError: A negative ``debounce_timeout_sec``.

    Example:
        >>> debouncer = DebouncerClient(client, {"workflow_name": "reindex", "queue_name": "q"})
        >>> handle = debouncer.debounce("user-7", 5.0, 7)
    """

    def __init__(
        self,
        client: DBOSClient,
        workflow_options: EnqueueOptions,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        refuse_application_name(application_name, "DebouncerClient")
        self.client = client
        # Read at each call, as DBOS does: a caller may change them between calls.
        self.workflow_options = workflow_options
        self.debounce_timeout_sec = check_timeout(debounce_timeout_sec)
        self.queue_name = queue.name if isinstance(queue, Queue) else queue

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> ClientWorkflowHandle[Any]:
        """`Debouncer.debounce` through the client (see there).

        Raises:
            DBOSException: The workflow options set something the debounce owns
                (``deduplication_id``, ``delay_seconds``, ``priority``,
                ``queue_partition_key``, a ``"return-existing"`` duplication policy or a
                ``"reject"`` ID-reuse policy), lack a name or queue, or name an unknown
                queue.
            DBOSQueueDeduplicatedError: The key is held by another workflow's colliding key
                or by a plain enqueue with the same deduplication ID.
            ValueError: An empty key or a negative period.
        """
        options: dict[str, Any] = dict(self.workflow_options)
        refuse_owned_options(
            deduplication_id=options.get("deduplication_id"),
            delay_seconds=options.get("delay_seconds"),
            priority=options.get("priority"),
            queue_partition_key=options.get("queue_partition_key"),
            duplication_policy=options.get("duplication_policy"),
            reuse_policy=options.get("workflow_id_reuse_policy"),
        )
        name = options.get("workflow_name")
        queue_name = self.queue_name or options.get("queue_name")
        if not name or not queue_name:
            raise DBOSException(
                "DebouncerClient needs workflow options with 'workflow_name' and 'queue_name' "
                "(or queue=...), e.g. {'workflow_name': 'reindex', 'queue_name': 'jobs'}."
            )
        pinned_id = options.pop("workflow_id", None) or take_next_options().workflow_id
        window = Window.create(
            name,
            queue_name,
            debounce_key,
            period_sec=debounce_period_sec,
            timeout_sec=self.debounce_timeout_sec,
        )
        # The client's own store and payloads: the debounce is part of the client.
        store, payloads = self.client._store, self.client._payloads
        inputs = payloads.encode(
            {"args": args, "kwargs": kwargs}, what=f"input of workflow {name!r}"
        )

        def bounce() -> Bounce:
            return bounce_once(store, window.request(inputs, payloads.format))

        def enqueue(workflow_id: str) -> str:
            given: dict[str, Any] = {
                **options,
                "queue_name": queue_name,
                "workflow_id": workflow_id,
                "deduplication_id": window.deduplication_id,
                "delay_seconds": window.first_delay_sec(),
                "duplication_policy": "return-existing",
            }
            return self.client.enqueue(cast(EnqueueOptions, given), *args, **kwargs).workflow_id

        workflow_id = settle(window, bounce=bounce, enqueue=enqueue, pinned_id=pinned_id)
        return self.client._handle(workflow_id)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `debounce`."""
        handle = await asyncio.to_thread(
            self.debounce, debounce_key, debounce_period_sec, *args, **kwargs
        )
        return ClientWorkflowHandleAsync(handle)
