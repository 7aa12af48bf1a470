"""Workflow handles and the `WorkflowStatus` record they return."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from perdure.clock import now_ms
from perdure.error import DBOSNonExistentWorkflowError
from perdure.execution.context import current_workflow
from perdure.execution.steps import RetryPolicy, run_step, run_step_async
from perdure.execution.workflow import ActiveWorkflow, WorkflowEngine
from perdure.serialization import Payloads
from perdure.storage.records import WorkflowRow
from perdure.storage.records import WorkflowStatusString as S

R = TypeVar("R")

GET_RESULT_STEP_NAME = "DBOS.getResult"


@dataclass
class WorkflowStatus:
    """Everything recorded about one workflow execution. Times are epoch milliseconds."""

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
    )


def get_status(engine: WorkflowEngine, workflow_id: str) -> WorkflowStatus | None:
    """The workflow's status, or None if no such workflow exists."""
    row = engine.store.get_workflow(workflow_id)
    return decode_status(engine.payloads, row) if row is not None else None


class WorkflowHandle(Generic[R]):
    """A reference to a workflow execution, running here, elsewhere, or finished."""

    def __init__(
        self, engine: WorkflowEngine, workflow_id: str, active: ActiveWorkflow | None = None
    ) -> None:
        self._engine = engine
        self.workflow_id = workflow_id
        # The execution this process started, if any: its outcome needs no database read.
        self._active = active

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_result(self) -> R:
        """Wait for the workflow to end; return its output or raise its error (original type).

        Inside a workflow the result is checkpointed, so a replay returns the same outcome.
        """
        if current_workflow() is None:
            return self._engine.await_result(self.workflow_id, self._active)  # type: ignore[no-any-return]
        return run_step(  # type: ignore[no-any-return]
            self._engine,
            self._engine.await_result,
            (self.workflow_id, self._active),
            {},
            name=GET_RESULT_STEP_NAME,
            policy=RetryPolicy(),
        )

    def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        status = get_status(self._engine, self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status


class WorkflowHandleAsync(Generic[R]):
    """The asyncio twin of `WorkflowHandle`: the same methods, as coroutines."""

    def __init__(
        self, engine: WorkflowEngine, workflow_id: str, active: ActiveWorkflow | None = None
    ) -> None:
        self._engine = engine
        self._active = active
        self._sync: WorkflowHandle[R] = WorkflowHandle(engine, workflow_id, active)
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    async def get_result(self) -> R:
        """Wait for the workflow to end, on the event loop (no thread is taken).

        Inside a workflow the result is checkpointed, at a position taken on the loop.
        """
        engine, workflow_id, active = self._engine, self.workflow_id, self._active
        if current_workflow() is None:
            return await engine.await_result_async(workflow_id, active)  # type: ignore[no-any-return]
        return await run_step_async(  # type: ignore[no-any-return]
            engine,
            engine.await_result_async,
            (workflow_id, active),
            {},
            name=GET_RESULT_STEP_NAME,
            policy=RetryPolicy(),
        )

    async def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        return await asyncio.to_thread(self._sync.get_status)
