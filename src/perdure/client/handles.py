"""Handles the client returns: they read the database, since no engine runs here."""

from __future__ import annotations

import asyncio
import uuid
from typing import Generic, TypeVar

from perdure import clock
from perdure.error import DBOSNonExistentWorkflowError
from perdure.execution.handles import WorkflowStatus
from perdure.execution.notifier import Notifier, channel
from perdure.execution.workflow import recorded_outcome
from perdure.management import WorkflowManager
from perdure.serialization import Payloads
from perdure.storage.records import TERMINAL_STATUSES, WorkflowRow

R = TypeVar("R")


class ClientWorkflowHandle(Generic[R]):
    """A workflow seen from a client: its status, and its result once it ends."""

    def __init__(
        self, manager: WorkflowManager, payloads: Payloads, notifier: Notifier, workflow_id: str
    ) -> None:
        self._manager = manager
        self._payloads = payloads
        self._notifier = notifier
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_status(self) -> WorkflowStatus:
        """The workflow's current `WorkflowStatus`."""
        status = self._manager.get_workflow_status(self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError("target", self.workflow_id)
        return status

    def get_result(
        self, *, polling_interval_sec: float = 1.0, timeout_sec: float | None = None
    ) -> R:
        """Wait for the workflow to end; its output or its error.

        Woken by the workflow's end (a PostgreSQL notification; on SQLite, polling every
        ``notification_listener_polling_interval_sec``). ``polling_interval_sec`` is accepted
        for DBOS compatibility and not used: the wait does not poll at a fixed interval.

        Raises:
            TimeoutError: ``timeout_sec`` passed first (the workflow keeps running).
        """
        del polling_interval_sec  # see the docstring
        store = self._manager.store

        def finished() -> WorkflowRow | None:
            row = store.get_workflow(self.workflow_id)
            if row is None:
                raise DBOSNonExistentWorkflowError("target", self.workflow_id)
            return row if row.status in TERMINAL_STATUSES else None

        deadline = None if timeout_sec is None else clock.monotonic() + timeout_sec
        row = finished()
        if row is None:
            waiter_id = uuid.uuid4().hex
            store.watch_result(self.workflow_id, waiter_id, watching=True)
            try:
                names = (channel("end", self.workflow_id),)
                row = self._notifier.wait_for(names, finished, deadline=deadline)
            finally:
                store.watch_result(self.workflow_id, waiter_id, watching=False)
        if row is None:
            raise TimeoutError(
                f"Workflow {self.workflow_id!r} did not finish within {timeout_sec}s; it is "
                "still running. Call get_result() again to keep waiting."
            )
        return recorded_outcome(self._payloads, row)  # type: ignore[no-any-return] # decoded payload


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

    async def get_result(
        self, *, polling_interval_sec: float = 1.0, timeout_sec: float | None = None
    ) -> R:
        """Wait for the workflow to end without blocking the event loop (the arguments are
        `ClientWorkflowHandle.get_result`'s)."""
        return await asyncio.to_thread(
            self._sync.get_result, polling_interval_sec=polling_interval_sec,
            timeout_sec=timeout_sec,
        )  # fmt: skip
