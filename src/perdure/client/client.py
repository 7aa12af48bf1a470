"""`DBOSClient`: manage workflows of a system database from a process that does not run them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

from typing_extensions import TypedDict, Unpack

from perdure.client.connection import open_existing_store
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.config import SYSTEM_DATABASE_URL_ENV, parse_config
from perdure.error import DBOSException, DBOSInitializationError, DBOSNonExistentWorkflowError
from perdure.execution.context import take_next_options
from perdure.execution.handles import WorkflowStatus
from perdure.execution.notifier import Notifier
from perdure.management import StepInfo, WorkflowManager
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters
from perdure.messaging.listener import NotificationListener
from perdure.messaging.operations import Messaging, in_thread
from perdure.serialization import PayloadCodec, Payloads, Serializer
from perdure.storage.interface import MessagingStore
from perdure.storage.postgres.store import psycopg_conninfo


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

    Resumed and forked workflows are handed to their executor rather than run here: they are
    set PENDING with no live owner, so the next launch of that executor (``executor_id``)
    recovers and runs them. Until queues exist (issue 5), a running application does not pick
    them up before it restarts.

    Args:
        system_database_url: The application's system database; defaults to the
            ``PERDURE_SYSTEM_DATABASE_URL`` environment variable.
        serializer: How to read and write payloads: ``"json"`` (default), ``"pickle"`` or a
            `Serializer`; rows are read by the format recorded with them.
        payload_codec: The application's payload codec, if it configured one.

    Raises:
        DBOSInitializationError: Unreachable database, missing or too new schema, bad URL.
    """

    def __init__(
        self,
        system_database_url: str | None = None,
        *,
        serializer: str | Serializer | None = None,
        payload_codec: PayloadCodec | None = None,
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
            }
        )
        self._payloads = Payloads(settings.serializer, settings.payload_codec)
        self._store = open_existing_store(settings.system_database_url)
        self._manager = WorkflowManager(self._store.management, self._payloads)
        notifier = Notifier(settings.notification_listener_polling_interval_sec)
        self._listener: NotificationListener | None = None
        if not url.startswith("sqlite"):
            # Waits (get_event, read_stream) wake on Postgres notifications, not polling.
            self._listener = NotificationListener(psycopg_conninfo(url), notifier)
            self._listener.start()
        store = cast(MessagingStore, self._store.system)
        self._messaging = Messaging(store, self._payloads, notifier)

    def destroy(self) -> None:
        """Close the database connections; the client is unusable afterwards."""
        if self._listener is not None:
            self._listener.stop()
        self._store.close()

    async def destroy_async(self) -> None:
        """Async twin of `destroy`."""
        await asyncio.to_thread(self.destroy)

    def _handle(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        return ClientWorkflowHandle(self._manager, self._payloads, workflow_id)

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

    async def get_event_async(
        self, workflow_id: str, key: str, timeout_seconds: float = 60
    ) -> Any:
        """Async twin of `get_event`."""
        return await asyncio.to_thread(self.get_event, workflow_id, key, timeout_seconds)

    def read_stream(self, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield a workflow's stream values in order until closed or the writer has ended."""
        return self._messaging.read_stream(workflow_id, key)

    async def read_stream_async(self, workflow_id: str, key: str) -> AsyncIterator[Any]:
        """Async twin of `read_stream`: an async generator."""
        async for value in in_thread(self.read_stream(workflow_id, key)):
            yield value

    # -- queues (not built yet) --------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> Any:
        """Enqueue a workflow by name on a queue. Not available yet: queues are issue 5.

        Raises:
            DBOSException: Always, until queues are implemented.
        """
        raise DBOSException(
            f"DBOSClient.enqueue({options.get('workflow_name')!r} on queue "
            f"{options.get('queue_name')!r}) is not available: Perdure does not implement "
            "queues yet (issue 5). Start the workflow from the application instead."
        )

    async def enqueue_async(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> Any:
        """Async twin of `enqueue` (not available yet either)."""
        return self.enqueue(options, *args, **kwargs)

    # -- reading ---------------------------------------------------------------------------

    def retrieve_workflow(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        """A handle to an existing workflow; its ``get_result`` polls the database.

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
        """Make a cancelled or dead-lettered workflow PENDING again, for its executor to run.

        The next launch of the workflow's executor recovers it from its last completed step
        (see the class docstring for why not sooner).
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

        The copy (a new ID, or the one set with `SetWorkflowID`) runs at the next launch of
        the source's executor.
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
