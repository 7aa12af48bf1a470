"""The management classmethods of `DBOS`: list, inspect, cancel, resume, fork, rewind, delete
workflows and change their attributes; in workflow code each call is recorded as a step, as in
DBOS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from typing_extensions import Unpack

from perdure.error import DBOSException
from perdure.execution.context import check_attributes, current_step, take_next_options
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from perdure.execution.rewound_checkpoints import drop_checkpoints
from perdure.facade.base import FacadeBase
from perdure.management import StepInfo, WorkflowManager
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters

# The names DBOS records these calls under when workflow code makes them.
LIST = "DBOS.listWorkflows"
LIST_QUEUED = "DBOS.listQueuedWorkflows"
LIST_STEPS = "DBOS.listWorkflowSteps"
CANCEL = "DBOS.cancelWorkflow"
RESUME = "DBOS.resumeWorkflow"
SET_DELAY = "DBOS.setWorkflowDelay"
FORK = "DBOS.forkWorkflow"
REWIND = "DBOS.rewindWorkflow"
DELETE = "DBOS.deleteWorkflow"
UPDATE_ATTRIBUTES = "DBOS.updateWorkflowAttributes"


def _attributes_update(attributes: dict[str, Any] | None, merge: bool) -> dict[str, Any] | None:
    checked = check_attributes(attributes, "update_workflow_attributes")
    if merge and checked is None:
        raise DBOSException(
            "Cannot merge None: update_workflow_attributes(merge=True) needs a dict to merge."
        )
    return checked


class ManagementFacade(FacadeBase):
    """Operators' calls on the launched instance; each has an ``_async`` twin."""

    @classmethod
    def _manager(cls) -> WorkflowManager:
        engine = cls._require_runtime().engine
        return WorkflowManager(engine.store, engine.payloads, engine=engine)

    @classmethod
    def list_workflows(cls, **filters: Unpack[ListWorkflowFilters]) -> list[WorkflowStatus]:
        """Workflows matching all the given filters, oldest first unless ``sort_desc``.

        Takes DBOS Transact's keyword arguments (all optional): ``workflow_ids``, ``status``
        (one or a list, ``"DELAYED"`` included), ``start_time`` / ``end_time`` (creation),
        ``completed_after`` / ``completed_before``, ``dequeued_after`` / ``dequeued_before``
        (ISO 8601 strings, datetimes or epoch ms), ``name``, ``app_version``,
        ``forked_from``, ``parent_workflow_id``, ``user``, ``queue_name``,
        ``workflow_id_prefix``, ``executor_id``, ``schedule_name``, ``application_name``
        (each one value or a list), ``queues_only``, ``was_forked_from``, ``is_fork``,
        ``has_parent``, ``limit``, ``offset``, ``sort_desc``, and ``load_input`` /
        ``load_output`` (False skips reading those payloads; the fields are then None). See
        `perdure.management.filters.ListWorkflowFilters` for each.

        A payload this process cannot decode is logged as a warning and listed as stored
        (as DBOS does), instead of failing the listing.

        Raises:
            ValueError: A malformed filter, or ``attributes`` (Perdure records none).
        """
        return cls._recorded(LIST, lambda: cls._manager().list_workflows(**filters))

    @classmethod
    async def list_workflows_async(
        cls, **filters: Unpack[ListWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_workflows`."""
        return await cls._recorded_async(LIST, lambda: cls._manager().list_workflows(**filters))

    @classmethod
    def list_queued_workflows(
        cls, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Workflows on a queue; unless ``status`` is given, those waiting or running there
        (ENQUEUED, DELAYED or PENDING).

        Takes the filters of `list_workflows` but ``queues_only``, ``was_forked_from`` and
        ``schedule_name``, as in DBOS.
        """
        return cls._recorded(LIST_QUEUED, lambda: cls._manager().list_queued_workflows(**filters))

    @classmethod
    async def list_queued_workflows_async(
        cls, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_queued_workflows`."""
        return await cls._recorded_async(
            LIST_QUEUED, lambda: cls._manager().list_queued_workflows(**filters)
        )

    @classmethod
    def list_workflow_steps(
        cls,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepInfo]:
        """The recorded steps of a workflow, by position, with decoded outputs and errors.

        ``load_output`` False leaves ``output`` and ``error`` None without reading them;
        ``limit`` / ``offset`` page through long workflows. An output this process cannot
        decode is logged as a warning and listed as stored.
        """
        return cls._recorded(
            LIST_STEPS,
            lambda: cls._manager().list_workflow_steps(
                workflow_id, load_output=load_output, limit=limit, offset=offset
            ),
        )

    @classmethod
    async def list_workflow_steps_async(
        cls,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepInfo]:
        """Async twin of `list_workflow_steps`."""
        return await cls._recorded_async(
            LIST_STEPS,
            lambda: cls._manager().list_workflow_steps(
                workflow_id, load_output=load_output, limit=limit, offset=offset
            ),
        )

    @classmethod
    def cancel_workflow(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow; with ``cancel_children`` its unfinished descendants too.

        A running execution stops at its next step or wait (here at once, elsewhere when it
        next records a step; one waiting for a child's result stops once that wait ends),
        and callers awaiting its result get `DBOSAwaitedWorkflowCancelledError`. Its child
        workflows keep running unless ``cancel_children``. A dead-lettered workflow is
        cancelled too; a finished one, and an unknown ID, are left alone (as in DBOS).
        `resume_workflow` continues a cancelled workflow.
        """
        cls.cancel_workflows([workflow_id], cancel_children=cancel_children)

    @classmethod
    async def cancel_workflow_async(
        cls, workflow_id: str, *, cancel_children: bool = False
    ) -> None:
        """Async twin of `cancel_workflow`."""
        await cls.cancel_workflows_async([workflow_id], cancel_children=cancel_children)

    @classmethod
    def cancel_workflows(cls, workflow_ids: list[str], *, cancel_children: bool = False) -> None:
        """`cancel_workflow` for several workflows at once (one statement)."""
        ids = list(workflow_ids)
        cls._recorded(
            CANCEL, lambda: cls._manager().cancel_workflows(ids, cancel_children=cancel_children)
        )

    @classmethod
    async def cancel_workflows_async(
        cls, workflow_ids: list[str], *, cancel_children: bool = False
    ) -> None:
        """Async twin of `cancel_workflows`."""
        ids = list(workflow_ids)
        await cls._recorded_async(
            CANCEL, lambda: cls._manager().cancel_workflows(ids, cancel_children=cancel_children)
        )

    @classmethod
    def resume_workflow(
        cls, workflow_id: str, *, queue_name: str | None = None
    ) -> WorkflowHandle[Any]:
        """Continue a cancelled or dead-lettered workflow from its last completed step.

        It runs in this process at once, or with ``queue_name`` is enqueued on that queue
        (a plain entry: no priority, partition or delay) for whichever process claims it.
        Finished steps are replayed, not re-executed. The deadline of a timed-out workflow
        is cleared. A finished workflow is left unchanged.

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID.
        """
        cls._recorded(
            RESUME, lambda: cls._manager().resume_workflow(workflow_id, queue_name=queue_name)
        )
        return WorkflowHandle(cls._require_runtime().engine, workflow_id)

    @classmethod
    async def resume_workflow_async(
        cls, workflow_id: str, *, queue_name: str | None = None
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `resume_workflow`."""
        await cls._recorded_async(
            RESUME, lambda: cls._manager().resume_workflow(workflow_id, queue_name=queue_name)
        )
        return WorkflowHandleAsync(cls._require_runtime().engine, workflow_id)

    @classmethod
    def resume_workflows(
        cls, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[WorkflowHandle[Any]]:
        """`resume_workflow` for each ID, in order; their handles."""
        return [cls.resume_workflow(w, queue_name=queue_name) for w in workflow_ids]

    @classmethod
    async def resume_workflows_async(
        cls, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[WorkflowHandleAsync[Any]]:
        """Async twin of `resume_workflows`."""
        return [await cls.resume_workflow_async(w, queue_name=queue_name) for w in workflow_ids]

    @classmethod
    def set_workflow_delay(
        cls,
        workflow_id: str,
        *,
        delay_seconds: float | None = None,
        delay_until_epoch_ms: int | None = None,
    ) -> None:
        """Change when a workflow still waiting on its queue (DELAYED or ENQUEUED) may start.

        Give exactly one of ``delay_seconds`` (from now) and ``delay_until_epoch_ms``. A
        time already past makes it ready at once; dequeuers are woken (on SQLite, those of
        other processes at their next poll). A workflow that is not waiting on a queue (it
        started, ended, or does not exist) is left alone, as in DBOS. DBOS changes only
        DELAYED workflows; Perdure also delays an ENQUEUED one not yet dequeued.

        Raises:
            DBOSException: Neither or both given, or a negative value.
        """
        cls._recorded(
            SET_DELAY,
            lambda: cls._manager().set_workflow_delay(
                workflow_id, delay_seconds=delay_seconds, delay_until_epoch_ms=delay_until_epoch_ms
            ),
        )

    @classmethod
    async def set_workflow_delay_async(
        cls,
        workflow_id: str,
        *,
        delay_seconds: float | None = None,
        delay_until_epoch_ms: int | None = None,
    ) -> None:
        """Async twin of `set_workflow_delay`."""
        await cls._recorded_async(
            SET_DELAY,
            lambda: cls._manager().set_workflow_delay(
                workflow_id, delay_seconds=delay_seconds, delay_until_epoch_ms=delay_until_epoch_ms
            ),
        )

    @classmethod
    def fork_workflow(
        cls,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        replacement_children: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a copy of a workflow that re-executes only its steps from ``start_step`` on.

        Steps at positions below ``start_step`` keep their recorded outcomes (a child
        workflow started there is replaced by the one ``replacement_children`` maps its ID
        to, if any). The copy gets a new ID (or the one set with `SetWorkflowID`), records
        ``forked_from``, and marks the source ``was_forked_from``. It runs in this process
        at once, or with ``queue_name`` is enqueued there (in ``queue_partition_key``'s
        partition). Its timeout is ``timeout_seconds``, else the source's.
        """
        new_workflow_id = cls._fork_id()
        new_id = cls._recorded(
            FORK,
            lambda: cls._manager().fork_workflow(
                workflow_id, start_step, application_version=application_version,
                new_workflow_id=new_workflow_id, queue_name=queue_name,
                queue_partition_key=queue_partition_key,
                replacement_children=replacement_children, timeout_seconds=timeout_seconds,
            ),
        )  # fmt: skip
        return WorkflowHandle(cls._require_runtime().engine, new_id)

    @staticmethod
    def _fork_id() -> str | None:
        """The fork's ID set with `SetWorkflowID`; a step's fork takes none, as in DBOS: the
        ID belongs to the next workflow its workflow starts."""
        return None if current_step() is not None else take_next_options().workflow_id

    @classmethod
    async def fork_workflow_async(
        cls,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        replacement_children: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `fork_workflow`."""
        # The ID set with SetWorkflowID is read here: context variables stay in this task.
        new_id = cls._fork_id()
        forked = await cls._recorded_async(
            FORK,
            lambda: cls._manager().fork_workflow(
                workflow_id, start_step, application_version=application_version,
                new_workflow_id=new_id, queue_name=queue_name,
                queue_partition_key=queue_partition_key,
                replacement_children=replacement_children, timeout_seconds=timeout_seconds,
            ),
        )  # fmt: skip
        return WorkflowHandleAsync(cls._require_runtime().engine, forked)

    @classmethod
    def rewind_workflow(
        cls,
        workflow_id: str,
        *,
        start_step: int | None = None,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        shard_key: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Run a finished workflow again from ``start_step`` (default: its first step), under
        its own ID.

        Only a workflow that ended (SUCCESS, ERROR, CANCELLED, or dead-lettered) can be
        rewound. What it did from ``start_step`` on is undone: those steps' records (a step
        there runs again, exactly once), the output or error, events published there (each
        key gets back its last value from before the cut, or none), stream closes written
        there (the entries stay; the rerun appends), messages received there and those never
        received; transaction checkpoints kept in application databases from there on are
        dropped too. Steps before the cut are replayed, not run. Messages it sends past the
        cut are sent again (but for those sent with an idempotency key). A child workflow
        started past the cut is not run again: the rerun finds it under the same ID and takes
        its outcome (rewind the child first to rerun it).

        It is enqueued on ``queue_name`` (in ``queue_partition_key``'s partition), else on the
        internal queue that every launched process serves; with ``application_version``
        only a process of that version runs it. Its timeout, if it has one, starts again.

        Args:
            workflow_id: The workflow to rewind.
            start_step: The first position to run again (positions count from 1).
            application_version: The version to record on it (default: its own).
            queue_name: The queue to enqueue it on.
            queue_partition_key: Its partition of ``queue_name``.
            shard_key: DBOS Enterprise's; Perdure has no shards, so it must be None.

        Returns:
            A handle on the workflow (same ID) to await its new outcome.

        Raises:
            ValueError: ``start_step`` below 1, or a partition key without a queue.
            DBOSNonExistentWorkflowError: No workflow has this ID.
            DBOSException: The workflow has not ended (cancel it first), or a ``shard_key``.
        """
        cls._recorded(
            REWIND,
            cls._rewind(
                workflow_id, start_step, application_version=application_version,
                queue_name=queue_name, queue_partition_key=queue_partition_key,
                shard_key=shard_key,
            ),
        )  # fmt: skip
        return WorkflowHandle(cls._require_runtime().engine, workflow_id)

    @classmethod
    async def rewind_workflow_async(
        cls,
        workflow_id: str,
        *,
        start_step: int | None = None,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        shard_key: str | None = None,
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `rewind_workflow`."""
        await cls._recorded_async(
            REWIND,
            cls._rewind(
                workflow_id, start_step, application_version=application_version,
                queue_name=queue_name, queue_partition_key=queue_partition_key,
                shard_key=shard_key,
            ),
        )  # fmt: skip
        return WorkflowHandleAsync(cls._require_runtime().engine, workflow_id)

    @classmethod
    def _rewind(
        cls,
        workflow_id: str,
        start_step: int | None,
        *,
        application_version: str | None,
        queue_name: str | None,
        queue_partition_key: str | None,
        shard_key: str | None,
    ) -> Callable[[], str]:
        """The rewind to run (as a step, in workflow code), with this process's application
        databases to drop checkpoints from."""
        step = 1 if start_step is None else start_step
        databases = [cls._require_runtime().app_db, *cls._datasources]
        return lambda: cls._manager().rewind_workflow(
            workflow_id, start_step=step, application_version=application_version,
            queue_name=queue_name, queue_partition_key=queue_partition_key, shard_key=shard_key,
            drop_checkpoints=lambda: drop_checkpoints(databases, workflow_id, step),
        )  # fmt: skip

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow's records (status and steps); its descendants' too if asked."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(
        cls, workflow_id: str, *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflow`."""
        await cls.delete_workflows_async([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: list[str], *, delete_children: bool = False) -> None:
        """`delete_workflow` for each ID."""
        cls._recorded(DELETE, lambda: cls._delete_each(workflow_ids, delete_children))

    @classmethod
    async def delete_workflows_async(
        cls, workflow_ids: list[str], *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflows`."""
        await cls._recorded_async(DELETE, lambda: cls._delete_each(workflow_ids, delete_children))

    @classmethod
    def _delete_each(cls, workflow_ids: list[str], delete_children: bool) -> None:
        manager = cls._manager()
        for workflow_id in workflow_ids:
            manager.delete_workflow(workflow_id, delete_children=delete_children)

    @classmethod
    def update_workflow_attributes(
        cls, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Replace a workflow's attributes (None clears them); with ``merge``, set the given
        top-level keys and keep the others. An unknown ID is left alone, as in DBOS.

        Raises:
            DBOSException: Attributes that are not a dict of JSON values, or ``merge``
                without a dict.
        """
        checked = _attributes_update(attributes, merge)
        store = cls._require_runtime().engine.store
        cls._recorded(
            UPDATE_ATTRIBUTES,
            lambda: store.update_workflow_attributes(workflow_id, checked, merge=merge),
        )

    @classmethod
    async def update_workflow_attributes_async(
        cls, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Async twin of `update_workflow_attributes`."""
        checked = _attributes_update(attributes, merge)
        store = cls._require_runtime().engine.store
        await cls._recorded_async(
            UPDATE_ATTRIBUTES,
            lambda: store.update_workflow_attributes(workflow_id, checked, merge=merge),
        )

    @classmethod
    def garbage_collect(
        cls, cutoff_epoch_ms: int | None = None, rows_threshold: int | None = None
    ) -> int:
        """Delete finished workflows created before ``cutoff_epoch_ms`` and/or all but the
        newest ``rows_threshold``; PENDING and ENQUEUED ones are kept. Returns how many.
        """
        return cls._manager().garbage_collect(cutoff_epoch_ms, rows_threshold)

    @classmethod
    async def garbage_collect_async(
        cls, cutoff_epoch_ms: int | None = None, rows_threshold: int | None = None
    ) -> int:
        """Async twin of `garbage_collect`."""
        return await asyncio.to_thread(cls.garbage_collect, cutoff_epoch_ms, rows_threshold)
