"""`DBOSClient`: manage workflows of a system database from a process that does not run them."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from typing_extensions import TypedDict, Unpack

from perdure.client.connection import open_existing_store
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.client.messaging import ClientMessaging
from perdure.client.queues import ClientQueues
from perdure.client.schedules import ClientSchedules
from perdure.clock import now_ms
from perdure.config import SYSTEM_DATABASE_URL_ENV, parse_config
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowIDInUseError,
)
from perdure.execution.context import (
    REUSE_POLICIES,
    SetEnqueueOptions,
    check_attributes,
    take_next_options,
)
from perdure.execution.handles import WorkflowStatus
from perdure.execution.notifier import Notifier
from perdure.logs import get_logger
from perdure.management import StepInfo, WorkflowManager
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters
from perdure.messaging.operations import Messaging
from perdure.messaging.wakeups import WakeUps
from perdure.queues.queue import QueueSpec
from perdure.serialization import PayloadCodec, Payloads, Serializer, check_serialization_type
from perdure.storage.records import (
    WorkflowRow,
    WorkflowStatusString,
    new_owner_token,
)

logger = get_logger(__name__)

# Recorded as the executor of workflows a client enqueues, until a worker claims them.
CLIENT_EXECUTOR_ID = "perdure-client"


class EnqueueOptions(TypedDict, total=False):
    """Options of `DBOSClient.enqueue`: which workflow, on which queue, and how.

    The keys of DBOS's ``EnqueueOptions``. Perdure honours all but the last group, which it
    refuses when set (rather than enqueue something other than asked): ``application_name``
    (one application per system database), ``otel_context`` (no trace propagation through
    the queue), ``shard_key`` (DBOS Cloud) and ``max_recovery_attempts`` (2.x: the limit is
    the workflow function's).
    """

    workflow_name: str
    queue_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int
    queue_partition_key: str
    delay_seconds: float
    duplication_policy: str
    workflow_id_reuse_policy: str
    class_name: str
    instance_name: str
    authenticated_user: str
    serialization_type: Any
    application_name: str
    attributes: dict[str, Any]
    authenticated_roles: list[str]
    otel_context: Any
    shard_key: str
    max_recovery_attempts: int


_REFUSED_OPTIONS = (
    "application_name",
    "otel_context",
    "shard_key",
    "max_recovery_attempts",
)


# DBOSClient options of DBOS's about its own engine and pool: accepted and ignored (with one
# warning), as the config keys of the same meaning are.
_IGNORED_CLIENT_OPTIONS = (
    "application_name",
    "dbos_system_schema",
    "lazy",
    "observability_query_timeout_sec",
    "retry_connection_errors",
    "sys_db_idle_transaction_timeout_sec",
    "system_database_engine",
    "system_database_polling_concurrency",
    "system_database_pool_size",
    "use_listen_notify",
)


def _ignore_dbos_options(options: dict[str, Any]) -> None:
    """Warn once about DBOS's tuning options; refuse a keyword neither library defines.

    Raises:
        TypeError: An unknown keyword (as Python would), with the accepted ones named.
    """
    unknown = sorted(set(options) - set(_IGNORED_CLIENT_OPTIONS) - {"sharding"})
    if unknown:
        raise TypeError(
            f"DBOSClient() got an unexpected keyword argument {unknown[0]!r}; it takes "
            "system_database_url, serializer, payload_codec, pickle_signing_key and DBOS's "
            f"{', '.join(_IGNORED_CLIENT_OPTIONS)} (ignored)."
        )
    if options.get("sharding"):
        raise DBOSInitializationError(
            "DBOSClient(sharding=True): sharding is a DBOS Cloud feature."
        )
    given = sorted(k for k, v in options.items() if v is not None and k != "sharding")
    if given:
        logger.warning(
            "DBOSClient ignores DBOS's option(s) %s: Perdure manages its own connections, "
            "schema and notifications.",
            ", ".join(given),
        )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _check_enqueue_options(options: EnqueueOptions) -> None:
    """Refuse a key DBOS does not define and one Perdure cannot honour, naming each."""
    unknown = sorted(set(options) - set(EnqueueOptions.__annotations__))
    if unknown:
        raise DBOSException(
            f"DBOSClient.enqueue: unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(EnqueueOptions.__annotations__)}."
        )
    refused = [k for k in _REFUSED_OPTIONS if options.get(k) is not None]
    if refused:
        raise DBOSException(
            f"DBOSClient.enqueue: Perdure does not support the option(s) {', '.join(refused)} "
            "(see EnqueueOptions for why); remove them."
        )
    if options.get("workflow_id_reuse_policy") not in (None, *REUSE_POLICIES):
        raise DBOSException(
            f"DBOSClient.enqueue: workflow_id_reuse_policy must be one of "
            f"{', '.join(REUSE_POLICIES)}, not {options.get('workflow_id_reuse_policy')!r}."
        )
    check_serialization_type(options.get("serialization_type"), "DBOSClient.enqueue")
    check_attributes(options.get("attributes"), "DBOSClient.enqueue")


class DBOSClient(ClientMessaging, ClientQueues, ClientSchedules):
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
        **dbos_options: Any,
    ) -> None:
        _ignore_dbos_options(dbos_options)
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

    # -- queues ------------------------------------------------------------------------------

    def enqueue(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> ClientWorkflowHandle[Any]:
        """Enqueue workflow ``options["workflow_name"]`` on queue ``options["queue_name"]``.

        The application's processes serving that queue run it; this process only records it
        (one round trip). ``workflow_id`` (or an enclosing ``SetWorkflowID``) makes the call
        idempotent (``workflow_id_reuse_policy="reject"``: an ID in use raises instead); the
        other options behave as in `SetEnqueueOptions`; ``class_name`` and ``instance_name``
        name a method workflow's class and configured instance.

        Raises:
            DBOSException: A missing name, or an option Perdure cannot honour (see
                `EnqueueOptions`). A queue no process has declared yet is not an error, as in
                DBOS: the workflow waits until one does (a warning is logged).
            DBOSQueueDeduplicatedError: The deduplication ID is taken by an unfinished
                workflow (unless ``duplication_policy="return-existing"``).
            DBOSWorkflowIDInUseError: The ID exists and ``workflow_id_reuse_policy`` is
                ``"reject"``.
        """
        name, queue_name = options.get("workflow_name"), options.get("queue_name")
        if not name or not queue_name:
            raise DBOSException(
                "DBOSClient.enqueue needs options with 'workflow_name' and 'queue_name', e.g. "
                "{'workflow_name': 'process_order', 'queue_name': 'orders'}."
            )
        _check_enqueue_options(options)
        found = self._store.list_queues((queue_name,))
        given = SetEnqueueOptions(
            deduplication_id=options.get("deduplication_id"),
            priority=options.get("priority"),
            queue_partition_key=options.get("queue_partition_key"),
            delay_seconds=options.get("delay_seconds"),
            app_version=options.get("app_version"),
            duplication_policy=options.get("duplication_policy"),
        ).options
        if found:
            placement = QueueSpec.from_record(found[0]).placement(given, now_ms=now_ms())
        else:
            # As in DBOS: the workflow waits ENQUEUED until a process declares the queue
            # (with the key it was given, if the queue turns out to be partitioned).
            logger.warning(
                "Queue %r is not defined in this system database yet: workflow %r waits "
                "ENQUEUED until a process declares the queue (Queue(...), register_queue).",
                queue_name,
                name,
            )
            unchecked = (
                given
                if given.queue_partition_key is None
                else replace(given, queue_partition_key=None)
            )
            placement = QueueSpec.create(queue_name).placement(unchecked, now_ms=now_ms())
            placement = replace(placement, partition_key=given.queue_partition_key)
        next_options = take_next_options()
        workflow_id = options.get("workflow_id") or next_options.workflow_id
        reuse = options.get("workflow_id_reuse_policy") or next_options.reuse_policy
        row = self._queued_row(workflow_id or str(uuid.uuid4()), name, options, args, kwargs)
        try:
            outcome = self._store.start_workflow(placement.place(row))
        except DBOSQueueDeduplicatedError as exc:
            if given.duplication_policy != "return-existing" or not exc.holder_workflow_id:
                raise
            return self._handle(exc.holder_workflow_id)
        if not outcome.created and reuse == "reject":
            existing = outcome.row
            raise DBOSWorkflowIDInUseError(existing.workflow_id, existing.status, existing.name)
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
            class_name=options.get("class_name"),
            config_name=options.get("instance_name"),
            inputs=inputs,
            output=None,
            error=None,
            serialization=self._payloads.format,
            executor_id=CLIENT_EXECUTOR_ID,
            instance_id=CLIENT_EXECUTOR_ID,
            app_version=options.get("app_version") or "",
            queue_name=None,
            authenticated_user=options.get("authenticated_user"),
            authenticated_roles=_json_or_none(options.get("authenticated_roles")),
            attributes=_json_or_none(options.get("attributes")),
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
            raise DBOSNonExistentWorkflowError("target", workflow_id)
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

    def list_workflow_steps(
        self,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepInfo]:
        """The recorded steps of a workflow, by position (see `DBOS.list_workflow_steps`)."""
        return self._manager.list_workflow_steps(
            workflow_id, load_output=load_output, limit=limit, offset=offset
        )

    async def list_workflow_steps_async(
        self,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepInfo]:
        """Async twin of `list_workflow_steps`."""
        return await asyncio.to_thread(
            self.list_workflow_steps, workflow_id, load_output=load_output, limit=limit,
            offset=offset,
        )  # fmt: skip

    # -- steering --------------------------------------------------------------------------

    def cancel_workflow(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow; with ``cancel_children`` its unfinished descendants too.

        The process running it stops it when it next records a step. Finished workflows and
        unknown IDs are left alone (see `DBOS.cancel_workflow`).
        """
        self._manager.cancel_workflows([workflow_id], cancel_children=cancel_children)

    async def cancel_workflow_async(
        self, workflow_id: str, *, cancel_children: bool = False
    ) -> None:
        """Async twin of `cancel_workflow`."""
        await asyncio.to_thread(self.cancel_workflow, workflow_id, cancel_children=cancel_children)

    def cancel_workflows(self, workflow_ids: list[str], *, cancel_children: bool = False) -> None:
        """`cancel_workflow` for several workflows at once (one statement)."""
        self._manager.cancel_workflows(workflow_ids, cancel_children=cancel_children)

    async def cancel_workflows_async(
        self, workflow_ids: list[str], *, cancel_children: bool = False
    ) -> None:
        """Async twin of `cancel_workflows`."""
        await asyncio.to_thread(
            self.cancel_workflows, workflow_ids, cancel_children=cancel_children
        )

    def resume_workflow(
        self, workflow_id: str, *, queue_name: str | None = None
    ) -> ClientWorkflowHandle[Any]:
        """Continue a cancelled, dead-lettered or interrupted workflow in a launched process.

        It is put on ``queue_name``, or else on the internal queue; the process that claims it
        continues it from its last completed step. Its timeout is cleared.

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID.
        """
        self._manager.resume_workflow(workflow_id, queue_name=queue_name)
        return self._handle(workflow_id)

    async def resume_workflow_async(
        self, workflow_id: str, *, queue_name: str | None = None
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `resume_workflow`."""
        return ClientWorkflowHandleAsync(
            await asyncio.to_thread(self.resume_workflow, workflow_id, queue_name=queue_name)
        )

    def resume_workflows(
        self, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[ClientWorkflowHandle[Any]]:
        """`resume_workflow` for each ID, in order; their handles."""
        return [self.resume_workflow(w, queue_name=queue_name) for w in workflow_ids]

    async def resume_workflows_async(
        self, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[ClientWorkflowHandleAsync[Any]]:
        """Async twin of `resume_workflows`."""
        handles = await asyncio.to_thread(
            self.resume_workflows, workflow_ids, queue_name=queue_name
        )
        return [ClientWorkflowHandleAsync(h) for h in handles]

    def set_workflow_delay(
        self,
        workflow_id: str,
        *,
        delay_seconds: float | None = None,
        delay_until_epoch_ms: int | None = None,
    ) -> None:
        """Change when a workflow waiting on its queue may start (see
        `DBOS.set_workflow_delay`)."""
        self._manager.set_workflow_delay(
            workflow_id, delay_seconds=delay_seconds, delay_until_epoch_ms=delay_until_epoch_ms
        )

    async def set_workflow_delay_async(
        self,
        workflow_id: str,
        *,
        delay_seconds: float | None = None,
        delay_until_epoch_ms: int | None = None,
    ) -> None:
        """Async twin of `set_workflow_delay`."""
        await asyncio.to_thread(
            self.set_workflow_delay, workflow_id, delay_seconds=delay_seconds,
            delay_until_epoch_ms=delay_until_epoch_ms,
        )  # fmt: skip

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        replacement_children: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> ClientWorkflowHandle[Any]:
        """Record a copy of a workflow that re-executes its steps from ``start_step`` on.

        The copy (a new ID, or the one set with `SetWorkflowID`) runs in a launched process
        that claims it from ``queue_name`` (else the internal queue); its timeout starts
        then. The other options are `DBOS.fork_workflow`'s.
        """
        new_id = self._manager.fork_workflow(
            workflow_id, start_step, application_version=application_version,
            new_workflow_id=take_next_options().workflow_id, queue_name=queue_name,
            queue_partition_key=queue_partition_key, replacement_children=replacement_children,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
        return self._handle(new_id)

    async def fork_workflow_async(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        replacement_children: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `fork_workflow`."""
        new_id = take_next_options().workflow_id  # read in this task, where it was set
        forked = await asyncio.to_thread(
            self._manager.fork_workflow, workflow_id, start_step,
            application_version=application_version, new_workflow_id=new_id,
            queue_name=queue_name, queue_partition_key=queue_partition_key,
            replacement_children=replacement_children, timeout_seconds=timeout_seconds,
        )  # fmt: skip
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
