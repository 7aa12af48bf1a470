"""`DBOSClient`'s batch deletes and attribute updates: the app's `DBOS` calls of the same name."""

from __future__ import annotations

import asyncio
from typing import Any

from perdure.client.connected import ClientParts
from perdure.error import DBOSException
from perdure.execution.context import check_attributes


class ClientSteering(ClientParts):
    """Deletes and attribute updates of a client, on the workflows of its system database."""

    def delete_workflows(self, workflow_ids: list[str], *, delete_children: bool = False) -> None:
        """Delete each workflow's records (and its descendants' if asked), as
        `DBOS.delete_workflows` does; unknown IDs are skipped."""
        for workflow_id in workflow_ids:
            self._manager.delete_workflow(workflow_id, delete_children=delete_children)

    async def delete_workflows_async(
        self, workflow_ids: list[str], *, delete_children: bool = False
    ) -> None:
        """Async twin of `delete_workflows`."""
        await asyncio.to_thread(
            self.delete_workflows, workflow_ids, delete_children=delete_children
        )

    def update_workflow_attributes(
        self, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Replace a workflow's attributes (None clears them); with ``merge``, set the given
        top-level keys and keep the others (one statement). An unknown ID is left alone.

        Raises:
            DBOSException: Attributes that are not a dict of JSON values, or ``merge``
                without a dict.
        """
        checked = check_attributes(attributes, "DBOSClient.update_workflow_attributes")
        if merge and checked is None:
            raise DBOSException(
                "DBOSClient.update_workflow_attributes(merge=True) needs a dict to merge."
            )
        self._store.update_workflow_attributes(workflow_id, checked, merge=merge)

    async def update_workflow_attributes_async(
        self, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Async twin of `update_workflow_attributes`."""
        await asyncio.to_thread(
            self.update_workflow_attributes, workflow_id, attributes, merge=merge
        )
