"""Handles the client returns: they read the database, since no engine runs here."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar

from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.handles import WorkflowStatus
from perdure.management import WorkflowManager
from perdure.serialization import Payloads
from perdure.storage.interface import WorkflowRow
from perdure.storage.interface import WorkflowStatusString as S

R = TypeVar("R")

_TERMINAL = (S.SUCCESS, S.ERROR, S.CANCELLED, S.MAX_RECOVERY_ATTEMPTS_EXCEEDED)
# get_result polls with a growing interval: quick for short workflows, gentle for long ones.
FIRST_POLL_SEC = 0.01
MAX_POLL_SEC = 1.0


def recorded_outcome(payloads: Payloads, row: WorkflowRow) -> Any:
    """The output of a finished workflow, or raise the error it ended with."""
    wid = row.workflow_id
    if row.status == S.SUCCESS:
        if row.output is None:
            return None
        what = f"output of workflow {row.name!r}"
        return payloads.decode(row.output, row.serialization, what=what, workflow_id=wid)
    if row.status == S.ERROR:
        raise payloads.decode_error(row.error or b"", row.serialization, workflow_id=wid)
    if row.status == S.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(wid)
    raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(wid)


class ClientWorkflowHandle(Generic[R]):
    """A workflow seen from a client: its status, and its result once it ends."""

    def __init__(self, manager: WorkflowManager, payloads: Payloads, workflow_id: str) -> None:
        self._manager = manager
        self._payloads = payloads
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        status = self._manager.get_workflow_status(self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status

    def get_result(self, *, timeout_sec: float | None = None) -> R:
        """Wait for the workflow to end (polling the database); its output or its error.

        Raises:
            TimeoutError: ``timeout_sec`` passed first (the workflow keeps running).
        """
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        delay = FIRST_POLL_SEC
        while True:
            row = self._manager.store.get_workflow(self.workflow_id)
            if row is None:
                raise DBOSNonExistentWorkflowError(self.workflow_id)
            if row.status in _TERMINAL:
                return recorded_outcome(self._payloads, row)  # type: ignore[no-any-return] # decoded payload
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"Workflow {self.workflow_id!r} did not finish within {timeout_sec}s; it is "
                    "still running. Call get_result() again to keep waiting."
                )
            time.sleep(delay)  # the client has no notifications yet: back-off between polls
            delay = min(delay * 2, MAX_POLL_SEC)


class ClientWorkflowHandleAsync(Generic[R]):
    """The asyncio twin of `ClientWorkflowHandle`."""

    def __init__(self, sync: ClientWorkflowHandle[R]) -> None:
        self._sync = sync
        self.workflow_id = sync.workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    async def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        return await asyncio.to_thread(self._sync.get_status)

    async def get_result(self, *, timeout_sec: float | None = None) -> R:
        """Wait for the workflow to end without blocking the event loop."""
        return await asyncio.to_thread(self._sync.get_result, timeout_sec=timeout_sec)
