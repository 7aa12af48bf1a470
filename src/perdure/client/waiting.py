"""`DBOSClient.wait_first`: wait for the first of several workflows to end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from perdure.client.connected import ClientParts
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.error import DBOSNonExistentWorkflowError
from perdure.execution.notifier import channel
from perdure.storage.records import TERMINAL_STATUSES, WorkflowQuery

H = TypeVar("H", ClientWorkflowHandle[Any], ClientWorkflowHandleAsync[Any])


class ClientWaiting(ClientParts):
    """Waits of a client on several workflows at once."""

    def wait_first(
        self, handles: list[ClientWorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> ClientWorkflowHandle[Any]:
        """Wait until one of ``handles``' workflows ends (in any status); return its handle.

        If several have ended already, the first of them in ``handles`` is returned. The wait
        is woken by each workflow's end (a PostgreSQL notification; on SQLite, polling every
        ``notification_listener_polling_interval_sec``); ``polling_interval_sec`` is accepted
        for DBOS compatibility and not used, as in `ClientWorkflowHandle.get_result`.

        Raises:
            ValueError: No handles, or the same workflow twice.
            DBOSNonExistentWorkflowError: A handle names no workflow.
        """
        del polling_interval_sec  # see the docstring
        by_id = _by_id(handles)
        ids = tuple(by_id)
        found = self._first_ended(ids)
        if found is None:
            with self._watching(ids):
                found = self._notifier.wait_for(
                    _end_channels(ids), lambda: self._first_ended(ids), deadline=None
                )
        assert found is not None  # noqa: S101 - no deadline: returns only once one ended
        return by_id[found]

    async def wait_first_async(
        self, handles: list[ClientWorkflowHandleAsync[Any]], *, polling_interval_sec: float = 1.0
    ) -> ClientWorkflowHandleAsync[Any]:
        """Async twin of `wait_first`: it waits on the event loop, taking no thread."""
        del polling_interval_sec  # see `wait_first`
        by_id = _by_id(handles)
        ids = tuple(by_id)
        found = self._first_ended(ids)
        if found is None:
            with self._watching(ids):
                found = await self._notifier.wait_for_async(
                    _end_channels(ids), lambda: self._first_ended(ids), deadline=None
                )
        assert found is not None  # noqa: S101 - no deadline: returns only once one ended
        return by_id[found]

    def _first_ended(self, workflow_ids: tuple[str, ...]) -> str | None:
        """The first of ``workflow_ids`` (in their order) that has ended, else None: one read."""
        query = WorkflowQuery(workflow_ids=workflow_ids, with_inputs=False, with_outputs=False)
        statuses = {row.workflow_id: row.status for row in self._store.list_workflows(query)}
        for workflow_id in workflow_ids:
            status = statuses.get(workflow_id)
            if status is None:
                raise DBOSNonExistentWorkflowError("target", workflow_id)
            if status in TERMINAL_STATUSES:
                return workflow_id
        return None

    @contextmanager
    def _watching(self, workflow_ids: tuple[str, ...]) -> Iterator[None]:
        """Registered as a waiter of each, so that each one's end notifies (PostgreSQL)."""
        waiter_id = uuid.uuid4().hex
        watched: list[str] = []
        try:
            for workflow_id in workflow_ids:
                self._store.watch_result(workflow_id, waiter_id, watching=True)
                watched.append(workflow_id)
            yield
        finally:
            for workflow_id in watched:
                self._store.watch_result(workflow_id, waiter_id, watching=False)


def _by_id(handles: Sequence[H]) -> dict[str, H]:
    if not handles:
        raise ValueError("wait_first needs at least one handle")
    by_id = {h.workflow_id: h for h in handles}
    if len(by_id) != len(handles):
        raise ValueError("wait_first was given the same workflow twice; pass distinct handles")
    return by_id


def _end_channels(workflow_ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(channel("end", w) for w in workflow_ids)
