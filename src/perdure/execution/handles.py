"""Workflow handles and the `WorkflowStatus` record they return."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from perdure.clock import now_ms
from perdure.error import DBOSNonExistentWorkflowError
from perdure.execution.context import current_workflow
from perdure.execution.notifier import channel
from perdure.execution.steps import RetryPolicy, run_step, run_step_async
from perdure.execution.workflow import ActiveWorkflow, WorkflowEngine
from perdure.serialization import Payloads
from perdure.storage.records import WorkflowRow
from perdure.storage.records import WorkflowStatusString as S

R = TypeVar("R")

GET_RESULT_STEP_NAME = "DBOS.getResult"


@dataclass
class WorkflowStatus:
    """Everything recorded about one workflow execution. Times are epoch milliseconds.

    The fields are DBOS Transact's. ``status`` is one of `WorkflowStatusString`'s values;
    ``DELAYED`` is an enqueued workflow whose delay has not passed. Perdure records:
    ``queue_partition_key``, ``dequeued_at`` (its last dequeue), ``delay_until_epoch_ms``
    (the start time of a delayed enqueue), ``completed_at`` (when it ended: SUCCESS, ERROR,
    CANCELLED or dead-lettered; None while it may still run, and for workflows that ended
    before Perdure recorded it), ``was_forked_from`` (a fork was made of it) and
    ``schedule_name`` (the schedule whose tick started it; for a ``@DBOS.scheduled``
    workflow, its name), ``authenticated_roles`` and ``assumed_role`` (who it acts for, with
    ``authenticated_user``) and ``attributes`` (given with `SetWorkflowAttributes`). It
    records no application names or IDs: ``application_name`` and ``app_id`` are None.
    """

    workflow_id: str
    status: str
    name: str
    class_name: str | None
    config_name: str | None
    input: dict[str, Any] | None
    output: Any
    error: BaseException | None
    created_at: int
    updated_at: int
    queue_name: str | None
    executor_id: str
    app_version: str
    recovery_attempts: int
    workflow_timeout_ms: int | None
    workflow_deadline_epoch_ms: int | None
    parent_workflow_id: str | None
    forked_from: str | None
    deduplication_id: str | None
    priority: int
    authenticated_user: str | None = None
    queue_partition_key: str | None = None
    was_forked_from: bool = False
    dequeued_at: int | None = None
    delay_until_epoch_ms: int | None = None
    completed_at: int | None = None
    schedule_name: str | None = None
    assumed_role: str | None = None
    authenticated_roles: list[str] | None = None
    attributes: dict[str, Any] | None = None
    application_name: str | None = None
    app_id: str | None = None


def decode_status(payloads: Payloads, row: WorkflowRow) -> WorkflowStatus:
    """Decode a stored row with ``payloads`` (no engine needed: clients and the CLI use it)."""
    wid, fmt = row.workflow_id, row.serialization
    inputs = (
        payloads.decode(row.inputs, fmt, what="workflow inputs", workflow_id=wid)
        if row.inputs
        else None
    )
    output = (
        payloads.decode(row.output, fmt, what="workflow output", workflow_id=wid)
        if row.output
        else None
    )
    error = payloads.decode_error(row.error, fmt, workflow_id=wid) if row.error else None
    status = row.status
    if status == S.ENQUEUED and row.not_before_epoch_ms and row.not_before_epoch_ms > now_ms():
        status = S.DELAYED  # stored as ENQUEUED with the time it may start
    return WorkflowStatus(
        workflow_id=wid,
        status=status,
        name=row.name,
        class_name=row.class_name,
        config_name=row.config_name,
        input=inputs,
        output=output,
        error=error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        queue_name=row.queue_name,
        executor_id=row.executor_id,
        app_version=row.app_version,
        recovery_attempts=row.recovery_attempts,
        workflow_timeout_ms=row.workflow_timeout_ms,
        workflow_deadline_epoch_ms=row.workflow_deadline_epoch_ms,
        parent_workflow_id=row.parent_workflow_id,
        forked_from=row.forked_from,
        deduplication_id=row.deduplication_id,
        priority=row.priority,
        authenticated_user=row.authenticated_user,
        queue_partition_key=row.queue_partition_key,
        was_forked_from=row.was_forked_from,
        dequeued_at=row.dequeued_at_epoch_ms,
        delay_until_epoch_ms=row.not_before_epoch_ms,
        completed_at=row.completed_at,
        schedule_name=row.schedule_name,
        assumed_role=row.assumed_role,
        authenticated_roles=None
        if row.authenticated_roles is None
        else json.loads(row.authenticated_roles),
        attributes=None if row.attributes is None else json.loads(row.attributes),
    )


def get_status(engine: WorkflowEngine, workflow_id: str) -> WorkflowStatus | None:
    """The workflow's status, or None if no such workflow exists."""
    row = engine.store.get_workflow(workflow_id)
    return decode_status(engine.payloads, row) if row is not None else None


def _await_result(
    engine: WorkflowEngine,
    workflow_id: str,
    active: ActiveWorkflow | None,
    poll_sec: float | None,
) -> Any:
    """The workflow's outcome once it ends; first, with ``poll_sec``, wait for it to exist
    (looking again every ``poll_sec``: its creation sends no notification)."""
    if poll_sec is not None:
        with engine.waiting():
            engine.notifier.wait_for(
                (channel("end", workflow_id),),
                partial(engine.store.get_workflow, workflow_id),
                deadline=None,
                poll_interval_sec=poll_sec,
            )
    return engine.await_result(workflow_id, active)


async def _await_result_async(
    engine: WorkflowEngine,
    workflow_id: str,
    active: ActiveWorkflow | None,
    poll_sec: float | None,
) -> Any:
    """`_await_result` on the event loop."""
    if poll_sec is not None:
        with engine.waiting():
            await engine.notifier.wait_for_async(
                (channel("end", workflow_id),),
                partial(engine.store.get_workflow, workflow_id),
                deadline=None,
                poll_interval_sec=poll_sec,
            )
    return await engine.await_result_async(workflow_id, active)


class WorkflowHandle(Generic[R]):
    """A reference to a workflow execution, running here, elsewhere, or finished.

    ``may_not_exist``: made without checking that the workflow exists
    (``retrieve_workflow(..., existing_workflow=False)``); ``get_result`` then waits for it
    to be started, as DBOS does.
    """

    def __init__(
        self,
        engine: WorkflowEngine,
        workflow_id: str,
        active: ActiveWorkflow | None = None,
        *,
        may_not_exist: bool = False,
    ) -> None:
        self._engine = engine
        self.workflow_id = workflow_id
        # The execution this process started, if any: its outcome needs no database read.
        self._active = active
        self._may_not_exist = may_not_exist

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        """Wait for the workflow to end; return its output or raise its error (original type).

        Inside a workflow the result is checkpointed, so a replay returns the same outcome.

        Args:
            polling_interval_sec: How often to look for a workflow that does not exist yet
                (only for a handle retrieved with ``existing_workflow=False``). The wait for
                its end does not poll at this interval: it is woken by the end itself (in
                this process at once; from another process by a PostgreSQL notification, or
                on SQLite by polling every ``notification_listener_polling_interval_sec`` of
                the configuration).

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID (a handle checked to exist
                whose workflow was deleted).
        """
        poll = polling_interval_sec if self._may_not_exist else None
        args = (self._engine, self.workflow_id, self._active, poll)
        if current_workflow() is None:
            return _await_result(*args)  # type: ignore[no-any-return]
        return run_step(  # type: ignore[no-any-return]
            self._engine, _await_result, args, {}, name=GET_RESULT_STEP_NAME,
            policy=RetryPolicy(),
        )  # fmt: skip

    def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        status = get_status(self._engine, self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError("target", self.workflow_id)
        return status


class WorkflowHandleAsync(Generic[R]):
    """The asyncio twin of `WorkflowHandle`: the same methods, as coroutines."""

    def __init__(
        self,
        engine: WorkflowEngine,
        workflow_id: str,
        active: ActiveWorkflow | None = None,
        *,
        may_not_exist: bool = False,
    ) -> None:
        self._engine = engine
        self._active = active
        self._may_not_exist = may_not_exist
        self._sync: WorkflowHandle[R] = WorkflowHandle(engine, workflow_id, active)
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    async def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        """Wait for the workflow to end, on the event loop (no thread is taken).

        Inside a workflow the result is checkpointed, at a position taken on the loop.
        ``polling_interval_sec`` is used as in `WorkflowHandle.get_result`.
        """
        engine = self._engine
        poll = polling_interval_sec if self._may_not_exist else None
        args = (engine, self.workflow_id, self._active, poll)
        if current_workflow() is None:
            return await _await_result_async(*args)  # type: ignore[no-any-return]
        return await run_step_async(  # type: ignore[no-any-return]
            engine, _await_result_async, args, {}, name=GET_RESULT_STEP_NAME,
            policy=RetryPolicy(),
        )  # fmt: skip

    async def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        return await asyncio.to_thread(self._sync.get_status)
