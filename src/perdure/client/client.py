"""`DBOSClient`: manage workflows of a system database from a process that does not run them."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from typing import Any

from typing_extensions import Unpack

from perdure.client.connection import check_connection, pick_url
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.client.messaging import ClientMessaging
from perdure.client.queues import ClientQueues
from perdure.client.schedules import ClientSchedules
from perdure.client.steering import ClientSteering
from perdure.client.transactional import ClientTransactions
from perdure.client.waiting import ClientWaiting
from perdure.config import SYSTEM_DATABASE_URL_ENV, parse_config
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowIDInUseError,
)
from perdure.execution.context import take_next_options
from perdure.execution.handles import WorkflowStatus
from perdure.execution.notifier import Notifier
from perdure.logs import get_logger
from perdure.management import StepInfo
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters
from perdure.queues.enqueue_options import (
    EnqueueOptions,
    check_enqueue_options,
    enqueue_settings,
    placement_on,
    queued_row,
)
from perdure.queues.queue import QueueSpec
from perdure.serialization import PayloadCodec, Payloads, Serializer
from perdure.storage.records import WorkflowRow
from perdure.storage.store import Store

logger = get_logger(__name__)

# Recorded as the executor of workflows a client enqueues, until a worker claims them.
CLIENT_EXECUTOR_ID = "perdure-client"


# DBOSClient options of DBOS's about its own engine and pool: accepted and ignored (with one
# warning), as the config keys of the same meaning are.
_IGNORED_CLIENT_OPTIONS = (
    "application_name",
    "dbos_system_schema",
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
            "system_database_url (or DBOS 2.31's database_url, application_database_url), "
            "serializer, payload_codec, pickle_signing_key, lazy and DBOS's "
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


class DBOSClient(
    ClientMessaging,
    ClientQueues,
    ClientSchedules,
    ClientSteering,
    ClientTransactions,
    ClientWaiting,
):
    """Lists, inspects and steers the workflows of a system database, without running them.

    It never creates or migrates the schema: the application (or ``perdure migrate``) does.

    Resumed and forked workflows are not run here: they are put on an internal queue that
    every launched process serves, and the first process free to run them does (on
    PostgreSQL at once; on SQLite another process sees them at its next poll).

    It connects to the system database (and checks its schema) at construction, or, with
    ``lazy=True``, on the first call that needs it: constructing a lazy client never fails
    for want of a database, and its `check_connection` connects and says whether it can.

    The system database comes from DBOS 3's keyword, or else DBOS 2.31's ones:

    - ``system_database_url``: the system database itself.
    - ``database_url`` (also the first positional argument) or, failing it,
      ``application_database_url``: read as DBOS 2.31 reads it, the application database,
      whose system database is ``<name>_dbos_sys`` on the same server (on SQLite, the same
      file), unless the URL's own database holds Perdure's schema: then it is the system
      database, so ``DBOSClient(system_url)``, as Perdure's clients have always been
      written, keeps working. A URL given but not used is named in a warning.
    - else the ``PERDURE_SYSTEM_DATABASE_URL`` environment variable.

    Args:
        database_url: DBOS 2.31's (deprecated there) application database URL; see above.
        system_database_url: The application's system database.
        application_database_url: DBOS 2.31's other name of ``database_url``.
        serializer: How to read and write payloads: ``"json"`` (default), ``"pickle"`` or a
            `Serializer`; rows are read by the format recorded with them.
        payload_codec: The application's payload codec, if it configured one.
        pickle_signing_key: The application's pickle signing key(s), if it configured them.
        lazy: Connect on first use rather than now. The first call then raises what an
            eager constructor would (after the same wait for a server that is starting).

    Raises:
        DBOSInitializationError: Unreachable database, missing or too new schema (unless
            ``lazy``: then at first use); no URL.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        system_database_url: str | None = None,
        application_database_url: str | None = None,
        serializer: str | Serializer | None = None,
        payload_codec: PayloadCodec | None = None,
        pickle_signing_key: str | bytes | Sequence[str | bytes] | None = None,
        lazy: bool = False,
        **dbos_options: Any,
    ) -> None:
        # DBOS 3.4 refuses lazy=True with use_listen_notify=True because its listener thread is
        # started only by an eager constructor. Perdure's is started with the connection,
        # at first use if lazy, and always on PostgreSQL (use_listen_notify is ignored), so the
        # two go together here: a lazy client's waits are woken by notifications too.
        _ignore_dbos_options(dbos_options)
        url, beside = pick_url(
            database_url, system_database_url=system_database_url,
            application_database_url=application_database_url,
        )  # fmt: skip
        url = url or os.environ.get(SYSTEM_DATABASE_URL_ENV)
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
        super().__init__(
            settings.system_database_url,
            beside=beside,
            payloads=Payloads(
                settings.serializer,
                settings.payload_codec,
                pickle_keys=settings.pickle_signing_keys,
            ),
            notifier=Notifier(settings.notification_listener_polling_interval_sec),
            lazy=lazy,
        )

    def destroy(self) -> None:
        """Close the database connections; the client is unusable afterwards. A lazy client
        that never connected has none to close."""
        self._disconnect()

    async def destroy_async(self) -> None:
        """Async twin of `destroy`."""
        await asyncio.to_thread(self.destroy)

    def check_connection(self) -> None:
        """Check that the system database is reachable now, and still has its schema.

        A lazy client that has not connected yet connects here.

        Raises:
            DBOSInitializationError: It is not (raised at once: this does not wait for it).
        """
        store = (self._connected or self._connect(connect_wait_sec=0.0)).store
        check_connection(store, store.url)

    async def check_connection_async(self) -> None:
        """Async twin of `check_connection`."""
        await asyncio.to_thread(self.check_connection)

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
        return self._handle(
            self._enqueue_into(self._store, options, args, kwargs, where="DBOSClient.enqueue")
        )

    def _enqueue_into(
        self,
        store: Store,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        where: str,
    ) -> str:
        """`enqueue`, writing the row with ``store`` (the client's, or one on a caller's
        transaction); the workflow's ID. The queue's settings are read with the client's."""
        name, queue_name = check_enqueue_options(options, where)
        given = enqueue_settings(options)
        found = self._store.list_queues((queue_name,))
        stored = QueueSpec.from_record(found[0]) if found else None
        placement = placement_on(stored, queue_name, name, given)
        next_options = take_next_options()
        workflow_id = options.get("workflow_id") or next_options.workflow_id
        reuse = options.get("workflow_id_reuse_policy") or next_options.reuse_policy
        row = self._queued_row(workflow_id or str(uuid.uuid4()), name, options, args, kwargs)
        try:
            outcome = store.start_workflow(placement.place(row))
        except DBOSQueueDeduplicatedError as exc:
            if given.duplication_policy != "return-existing" or not exc.holder_workflow_id:
                raise
            return exc.holder_workflow_id
        if not outcome.created and reuse == "reject":
            existing = outcome.row
            raise DBOSWorkflowIDInUseError(existing.workflow_id, existing.status, existing.name)
        if not outcome.created and outcome.row.name != name:
            raise DBOSConflictingWorkflowError(
                row.workflow_id,
                "Workflow already exists with a different function name: workflow ID "
                f"{row.workflow_id!r} belongs to {outcome.row.name!r}, so it cannot be used to "
                f"enqueue {name!r}.",
            )
        return row.workflow_id

    def _queued_row(
        self,
        workflow_id: str,
        name: str,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> WorkflowRow:
        """The row of workflow ``name`` this client enqueues (see `queued_row`)."""
        return queued_row(
            {**options, "workflow_name": name}, args, kwargs, workflow_id=workflow_id,
            payloads=self._payloads, executor_id=CLIENT_EXECUTOR_ID,
            instance_id=CLIENT_EXECUTOR_ID,
        )  # fmt: skip

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

    def rewind_workflow(
        self,
        workflow_id: str,
        *,
        start_step: int | None = None,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        shard_key: str | None = None,
    ) -> ClientWorkflowHandle[Any]:
        """Run a finished workflow again from ``start_step`` (default 1), under its own ID.

        As `DBOS.rewind_workflow`, except that a client knows no application database: the
        checkpoints of transactions on a database other than the system database (a separate
        application database, a datasource's own) are not dropped, so such transactions past
        the cut are replayed rather than run again (rewind from a launched process for that).
        """
        self._manager.rewind_workflow(
            workflow_id, start_step=1 if start_step is None else start_step,
            application_version=application_version, queue_name=queue_name,
            queue_partition_key=queue_partition_key, shard_key=shard_key,
        )  # fmt: skip
        return self._handle(workflow_id)

    async def rewind_workflow_async(
        self,
        workflow_id: str,
        *,
        start_step: int | None = None,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        shard_key: str | None = None,
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `rewind_workflow`."""
        handle = await asyncio.to_thread(
            self.rewind_workflow, workflow_id, start_step=start_step,
            application_version=application_version, queue_name=queue_name,
            queue_partition_key=queue_partition_key, shard_key=shard_key,
        )  # fmt: skip
        return ClientWorkflowHandleAsync(handle)

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
