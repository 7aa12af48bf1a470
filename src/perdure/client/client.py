"""`DBOSClient`: manage workflows of a system database from a process that does not run them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from typing_extensions import TypedDict, Unpack

from perdure.client.connection import open_existing_store
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.clock import now_ms
from perdure.config import SYSTEM_DATABASE_URL_ENV, parse_config
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.context import take_next_options
from perdure.execution.handles import WorkflowStatus
from perdure.execution.notifier import Notifier
from perdure.management import StepInfo, WorkflowManager
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters
from perdure.messaging.operations import Messaging
from perdure.messaging.wakeups import WakeUps
from perdure.serialization import PayloadCodec, Payloads, Serializer
from perdure.storage.records import (
    QueuePlacement,
    WorkflowRow,
    WorkflowStatusString,
    new_owner_token,
)

# Recorded as the executor of workflows a client enqueues, until a worker claims them.
CLIENT_EXECUTOR_ID = "perdure-client"


class EnqueueOptions(TypedDict, total=False):
    """Options of `DBOSClient.enqueue`: which workflow, on which queue, and how."""

    workflow_name: str
    queue_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int


class DBOSClient:
    """Lists, inspects and steers the workflows of a system database, without running them.

    It never creates or migrates the schema: the application (or ``perdure migrate``) does.

    Resumed and forked workflows are not run here: they are put on an internal queue that
    every launched process serves, and the first process free to run them does (on
    PostgreSQL at once; on SQLite another process sees them at its next poll).

    Args:
        system_database_url: The application's system database; defaults to the
            ``PERDURE_SYSTEM_DATABASE_URL`` environment variable.
        serializer: How to read and write payloads: ``"json"`` (default), ``"pickle"`` or a
            `Serializer`; rows are read by the format recorded with them.
        payload_codec: The application's payload codec, if it configured one.
        pickle_signing_key: The application's pickle signing key(s), if it configured them.

    Raises:
        DBOSInitializationError: Unreachable database, missing or too new schema, bad URL.
    """

    def __init__(
        self,
        system_database_url: str | None = None,
        *,
        serializer: str | Serializer | None = None,
        payload_codec: PayloadCodec | None = None,
        pickle_signing_key: str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        url = system_database_url or os.environ.get(SYSTEM_DATABASE_URL_ENV)
        if not url:
            raise DBOSInitializationError(
                "DBOSClient needs the system database URL: pass system_database_url=... or set "
                f"{SYSTEM_DATABASE_URL_ENV}."
            )
        settings = parse_config(
            {
                "name": "perdure-client",
                "system_database_url": url,
                "serializer": serializer,
                "payload_codec": payload_codec,
                "pickle_signing_key": pickle_signing_key,
            }
        )
        self._payloads = Payloads(
            settings.serializer, settings.payload_codec, pickle_keys=settings.pickle_signing_keys
        )
        self._store = open_existing_store(settings.system_database_url)
        self._manager = WorkflowManager(self._store, self._payloads)
        self._notifier = notifier = Notifier(settings.notification_listener_polling_interval_sec)
        # Waits (get_result, get_event, read_stream) wake on Postgres notifications, not polling.
        self._listener = self._store.listen(WakeUps(notifier), notifier.signal_all)
        self._messaging = Messaging(self._store, self._payloads, notifier)

    def destroy(self) -> None:
        """Close the database connections; the client is unusable afterwards."""
        if self._listener is not None:
            self._listener.stop()
        self._store.close()

    async def destroy_async(self) -> None:
        """Async twin of `destroy`."""
        await asyncio.to_thread(self.destroy)

    def _handle(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        return ClientWorkflowHandle(self._manager, self._payloads, self._notifier, workflow_id)

    # -- messages, events and streams ---------------------------------------------------------

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to workflow ``destination_id`` (see `DBOS.send`).

        With an ``idempotency_key`` (or inside ``SetWorkflowID``), a retried send is delivered
        once.
        """
        self._messaging.send(destination_id, message, topic, idempotency_key)

    async def send_async(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Async twin of `send`."""
        await asyncio.to_thread(self.send, destination_id, message, topic, idempotency_key)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The value ``workflow_id`` set for ``key``, waiting up to the timeout; else None."""
        return self._messaging.get_event(workflow_id, key, timeout_seconds)

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Async twin of `get_event`: it waits on the event loop, taking no thread."""
        return await self._messaging.get_event_async(workflow_id, key, timeout_seconds)

    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield a workflow's stream values in order until closed or the writer has ended."""
        return self._messaging.read_stream(workflow_id, key)

    async def read_stream_async(self, workflow_id: str, key: str) -> AsyncIterator[Any]:
        """Async twin of `read_stream`: an async generator."""
        async for value in self._messaging.read_stream_async(workflow_id, key):
            yield value

    # -- queues ------------------------------------------------------------------------------

    def enqueue(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> ClientWorkflowHandle[Any]:
        """Enqueue workflow ``options["workflow_name"]`` on queue ``options["queue_name"]``.

        The application's processes serving that queue run it; this process only records it
        (one round trip). ``workflow_id`` (or an enclosing ``SetWorkflowID``) makes the call
        idempotent; ``deduplication_id`` and ``priority`` behave as in `SetEnqueueOptions`.

        Raises:
            DBOSException: A missing name or an undefined queue.
            DBOSQueueDeduplicatedError: The deduplication ID is taken by an unfinished workflow.
        """
        name, queue_name = options.get("workflow_name"), options.get("queue_name")
        if not name or not queue_name:
            raise DBOSException(
                "DBOSClient.enqueue needs options with 'workflow_name' and 'queue_name', e.g. "
                "{'workflow_name': 'process_order', 'queue_name': 'orders'}."
            )
        found = self._store.list_queues((queue_name,))
        queue = found[0] if found else None
        if queue is None:
            raise DBOSException(
                f"Cannot enqueue {name!r}: queue {queue_name!r} is not defined in this system "
                "database. Launch the application that declares it first (Queue(...) or "
                "DBOS.register_queue)."
            )
        priority = options.get("priority")
        workflow_id = options.get("workflow_id") or take_next_options().workflow_id
        row = self._queued_row(workflow_id or str(uuid.uuid4()), name, options, args, kwargs)
        placed = QueuePlacement(queue_name, options.get("deduplication_id"), priority or 0).place(
            row
        )
        outcome = self._store.start_workflow(placed)
        if not outcome.created and outcome.row.name != name:
            raise DBOSConflictingWorkflowError(
                row.workflow_id,
                f"Workflow ID {row.workflow_id!r} already belongs to workflow "
                f"{outcome.row.name!r}, so it cannot be used to enqueue {name!r}.",
            )
        return self._handle(row.workflow_id)

    def _queued_row(
        self,
        workflow_id: str,
        name: str,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> WorkflowRow:
        inputs = self._payloads.encode(
            {"args": args, "kwargs": kwargs},
            what=f"input of workflow {name!r}",
            workflow_id=workflow_id,
        )
        timeout = options.get("workflow_timeout")
        now = now_ms()
        return WorkflowRow(
            workflow_id=workflow_id,
            status=WorkflowStatusString.PENDING,
            name=name,
            class_name=None,
            config_name=None,
            inputs=inputs,
            output=None,
            error=None,
            serialization=self._payloads.format,
            executor_id=CLIENT_EXECUTOR_ID,
            instance_id=CLIENT_EXECUTOR_ID,
            app_version=options.get("app_version") or "",
            queue_name=None,
            authenticated_user=None,
            created_at=now,
            updated_at=now,
            recovery_attempts=1,
            workflow_timeout_ms=round(timeout * 1000) if timeout else None,
            workflow_deadline_epoch_ms=None,  # a queued workflow's timeout runs from dequeue
            parent_workflow_id=None,
            forked_from=None,
            deduplication_id=None,
            priority=0,
            owner_token=new_owner_token(),
        )

    async def enqueue_async(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `enqueue`."""
        handle = await asyncio.to_thread(self.enqueue, options, *args, **kwargs)
        return ClientWorkflowHandleAsync(handle)

    # -- reading ---------------------------------------------------------------------------

    def retrieve_workflow(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        """A handle to an existing workflow; its ``get_result`` waits for it to end.

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID.
        """
        if self._manager.get_workflow_status(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return self._handle(workflow_id)

    async def retrieve_workflow_async(self, workflow_id: str) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `retrieve_workflow`."""
        return ClientWorkflowHandleAsync(
            await asyncio.to_thread(self.retrieve_workflow, workflow_id)
        )

    def list_workflows(self, **filters: Unpack[ListWorkflowFilters]) -> list[WorkflowStatus]:
        """Workflows matching the filters; the same filters as `DBOS.list_workflows`."""
        return self._manager.list_workflows(**filters)

    async def list_workflows_async(
        self, **filters: Unpack[ListWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_workflows`."""
        return await asyncio.to_thread(self._manager.list_workflows, **filters)

    def list_queued_workflows(
        self, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Unfinished workflows on queues; the same filters as `DBOS.list_queued_workflows`."""
        return self._manager.list_queued_workflows(**filters)

    async def list_queued_workflows_async(
        self, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_queued_workflows`."""
        return await asyncio.to_thread(self._manager.list_queued_workflows, **filters)

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, by position."""
        return self._manager.list_workflow_steps(workflow_id)

    async def list_workflow_steps_async(self, workflow_id: str) -> list[StepInfo]:
        """Async twin of `list_workflow_steps`."""
        return await asyncio.to_thread(self._manager.list_workflow_steps, workflow_id)

    # -- steering --------------------------------------------------------------------------

    def cancel_workflow(self, workflow_id: str) -> None:
        """Cancel a workflow and its unfinished children.

        The process running it stops it when it next records a step.
        """
        self._manager.cancel_workflow(workflow_id)

    async def cancel_workflow_async(self, workflow_id: str) -> None:
        """Async twin of `cancel_workflow`."""
        await asyncio.to_thread(self._manager.cancel_workflow, workflow_id)

    def resume_workflow(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        """Continue a cancelled, dead-lettered or interrupted workflow in a launched process.

        It is put on the internal queue; the process that claims it continues it from its last
        completed step. Its timeout is cleared.
        """
        self._manager.resume_workflow(workflow_id)
        return self._handle(workflow_id)

    async def resume_workflow_async(self, workflow_id: str) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `resume_workflow`."""
        return ClientWorkflowHandleAsync(await asyncio.to_thread(self.resume_workflow, workflow_id))

    def fork_workflow(
        self, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> ClientWorkflowHandle[Any]:
        """Record a copy of a workflow that re-executes its steps from ``start_step`` on.

        The copy (a new ID, or the one set with `SetWorkflowID`) runs in a launched process
        that claims it from the internal queue; its timeout starts then.
        """
        new_id = self._manager.fork_workflow(
            workflow_id,
            start_step,
            application_version=application_version,
            new_workflow_id=take_next_options().workflow_id,
        )
        return self._handle(new_id)

    async def fork_workflow_async(
        self, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `fork_workflow`."""
        new_id = take_next_options().workflow_id  # read in this task, where it was set
        forked = await asyncio.to_thread(
            self._manager.fork_workflow,
            workflow_id,
            start_step,
            application_version=application_version,
            new_workflow_id=new_id,
        )
        return ClientWorkflowHandleAsync(self._handle(forked))

    def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow's records (and its descendants' if asked)."""
        self._manager.delete_workflow(workflow_id, delete_children=delete_children)

    async def delete_workflow_async(
        self, workflow_id: str, *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflow`."""
        await asyncio.to_thread(
            self._manager.delete_workflow, workflow_id, delete_children=delete_children
        )
