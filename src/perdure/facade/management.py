"""The management classmethods of `DBOS`: list, inspect, cancel, resume, fork, delete workflows."""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import Unpack

from perdure.error import DBOSException
from perdure.execution.context import take_next_options
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from perdure.facade.base import FacadeBase
from perdure.management import StepInfo, WorkflowManager
from perdure.management.filters import ListWorkflowFilters, QueuedWorkflowFilters


class ManagementFacade(FacadeBase):
    """Operators' calls on the launched instance; each has an ``_async`` twin."""

    @classmethod
    def _manager(cls) -> WorkflowManager:
        engine = cls._require_runtime().engine
        return WorkflowManager(engine.store, engine.payloads, engine=engine)

    @classmethod
    def list_workflows(cls, **filters: Unpack[ListWorkflowFilters]) -> list[WorkflowStatus]:
        """Workflows matching all the given filters, oldest first unless ``sort_desc``.

        Keyword arguments (all optional): ``workflow_ids``, ``status`` (one or a list),
        ``start_time`` / ``end_time`` (creation time window: ISO 8601 string, datetime or epoch
        ms), ``name``, ``app_version``, ``user``, ``queue_name``, ``workflow_id_prefix``,
        ``limit``, ``offset``, ``sort_desc``, and ``load_input`` / ``load_output`` (False skips
        reading those payloads; the fields are then None).
        """
        return cls._manager().list_workflows(**filters)

    @classmethod
    async def list_workflows_async(
        cls, **filters: Unpack[ListWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_workflows`."""
        return await asyncio.to_thread(cls._manager().list_workflows, **filters)

    @classmethod
    def list_queued_workflows(
        cls, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Workflows on a queue that have not finished: ENQUEUED, or PENDING with a queue.

        Takes ``queue_name``, ``status``, ``start_time``, ``end_time``, ``name``, ``limit``,
        ``offset``, ``sort_desc`` and ``load_input``, as `list_workflows` does.
        """
        return cls._manager().list_queued_workflows(**filters)

    @classmethod
    async def list_queued_workflows_async(
        cls, **filters: Unpack[QueuedWorkflowFilters]
    ) -> list[WorkflowStatus]:
        """Async twin of `list_queued_workflows`."""
        return await asyncio.to_thread(cls._manager().list_queued_workflows, **filters)

    @classmethod
    def list_workflow_steps(cls, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, by position, with decoded outputs and errors."""
        return cls._manager().list_workflow_steps(workflow_id)

    @classmethod
    async def list_workflow_steps_async(cls, workflow_id: str) -> list[StepInfo]:
        """Async twin of `list_workflow_steps`."""
        return await asyncio.to_thread(cls.list_workflow_steps, workflow_id)

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel a workflow and its unfinished child workflows.

        A running execution stops at its next step or wait, and callers awaiting its result get
        `DBOSAwaitedWorkflowCancelledError`. A finished workflow is left unchanged.

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID.
        """
        cls._manager().cancel_workflow(workflow_id)

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str) -> None:
        """Async twin of `cancel_workflow`."""
        await asyncio.to_thread(cls.cancel_workflow, workflow_id)

    @classmethod
    def resume_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """Continue a cancelled or dead-lettered workflow from its last completed step.

        It runs in this process at once; finished steps are replayed, not re-executed. The
        deadline of a timed-out workflow is cleared. A finished workflow is left unchanged.
        """
        manager = cls._manager()
        manager.resume_workflow(workflow_id)
        return WorkflowHandle(cls._require_runtime().engine, workflow_id)

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """Async twin of `resume_workflow`."""
        await asyncio.to_thread(cls._manager().resume_workflow, workflow_id)
        return WorkflowHandleAsync(cls._require_runtime().engine, workflow_id)

    @classmethod
    def resume_workflows(
        cls, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[WorkflowHandle[Any]]:
        """`resume_workflow` for each ID, in order; their handles.

        Raises:
            DBOSException: ``queue_name`` given: Perdure resumes in this process, not onto a
                queue (refused rather than ignored).
        """
        _no_queue(queue_name)
        return [cls.resume_workflow(workflow_id) for workflow_id in workflow_ids]

    @classmethod
    async def resume_workflows_async(
        cls, workflow_ids: list[str], *, queue_name: str | None = None
    ) -> list[WorkflowHandleAsync[Any]]:
        """Async twin of `resume_workflows`."""
        _no_queue(queue_name)
        return [await cls.resume_workflow_async(workflow_id) for workflow_id in workflow_ids]

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """Start a copy of a workflow that re-executes only its steps from ``start_step`` on.

        Steps at positions below ``start_step`` (0-based) keep their recorded outcomes. The
        copy gets a new ID (or the one set with `SetWorkflowID`) and records ``forked_from``.
        """
        new_id = cls._fork(workflow_id, start_step, application_version)
        return WorkflowHandle(cls._require_runtime().engine, new_id)

    @classmethod
    async def fork_workflow_async(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `fork_workflow`."""
        # The ID set with SetWorkflowID is read here: context variables stay in this task.
        new_id = take_next_options().workflow_id
        manager = cls._manager()
        forked = await asyncio.to_thread(
            manager.fork_workflow,
            workflow_id,
            start_step,
            application_version=application_version,
            new_workflow_id=new_id,
        )
        return WorkflowHandleAsync(cls._require_runtime().engine, forked)

    @classmethod
    def _fork(cls, workflow_id: str, start_step: int, application_version: str | None) -> str:
        return cls._manager().fork_workflow(
            workflow_id,
            start_step,
            application_version=application_version,
            new_workflow_id=take_next_options().workflow_id,
        )

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow's records (status and steps); its descendants' too if asked."""
        cls._manager().delete_workflow(workflow_id, delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(
        cls, workflow_id: str, *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflow`."""
        await asyncio.to_thread(cls.delete_workflow, workflow_id, delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: list[str], *, delete_children: bool = False) -> None:
        """`delete_workflow` for each ID."""
        for workflow_id in workflow_ids:
            cls.delete_workflow(workflow_id, delete_children=delete_children)

    @classmethod
    async def delete_workflows_async(
        cls, workflow_ids: list[str], *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflows`."""
        await asyncio.to_thread(cls.delete_workflows, workflow_ids, delete_children=delete_children)

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


def _no_queue(queue_name: str | None) -> None:
    if queue_name is not None:
        raise DBOSException(
            f"resume_workflows(queue_name={queue_name!r}): Perdure resumes workflows in this "
            "process, not onto a queue. Call it without queue_name."
        )
