"""`DBOSClient`'s messages, events and streams: the `DBOS` calls made from outside workflows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

from perdure.client.connected import ClientParts
from perdure.messaging.outgoing import SendMessage
from perdure.serialization import WorkflowSerializationFormat


class ClientMessaging(ClientParts):
    """Sends, events and stream reads of a client (nothing is checkpointed: no workflow)."""

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Send ``message`` to workflow ``destination_id`` (see `DBOS.send`).

        With an ``idempotency_key`` (or inside ``SetWorkflowID``), a retried send is delivered
        once. ``send_to_forks`` also sends it to every workflow forked from the destination.
        """
        self._messaging.send(
            destination_id, message, topic, idempotency_key,
            serialization_type=serialization_type, to_forks=send_to_forks,
        )  # fmt: skip

    async def send_async(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Async twin of `send`."""
        send = partial(
            self.send, serialization_type=serialization_type, send_to_forks=send_to_forks
        )
        await asyncio.to_thread(send, destination_id, message, topic, idempotency_key)

    def send_bulk(
        self,
        messages: list[SendMessage],
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Send several messages in one transaction: all or none (see `DBOS.send_bulk`)."""
        self._messaging.send_bulk(
            messages, serialization_type=serialization_type, to_forks=send_to_forks
        )

    async def send_bulk_async(
        self,
        messages: list[SendMessage],
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Async twin of `send_bulk`."""
        send = partial(
            self.send_bulk, serialization_type=serialization_type, send_to_forks=send_to_forks
        )
        await asyncio.to_thread(send, messages)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The value ``workflow_id`` set for ``key``, waiting up to the timeout; else None."""
        return self._messaging.get_event(workflow_id, key, timeout_seconds)

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Async twin of `get_event`: it waits on the event loop, taking no thread."""
        return await self._messaging.get_event_async(workflow_id, key, timeout_seconds)

    def read_stream(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[Any]:
        """Yield a workflow's stream values in order until closed or the writer has ended.

        Arguments and errors as in `DBOS.read_stream`.
        """
        return self._messaging.streams.read(
            workflow_id, key, offset=offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip

    async def read_stream_async(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async twin of `read_stream`: an async generator."""
        values = self._messaging.streams.read_async(
            workflow_id, key, offset=offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
        async for value in values:
            yield value

    def read_stream_offset(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The value at ``offset`` of a workflow's stream, waiting for it to be written.

        Raises:
            DBOSStreamTimeoutError: Not written within ``timeout_seconds``, or the stream
                ended before ``offset``.
        """
        return self._messaging.streams.read_offset(
            workflow_id, key, offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip

    async def read_stream_offset_async(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """Async twin of `read_stream_offset`: it waits on the event loop."""
        return await self._messaging.streams.read_offset_async(
            workflow_id, key, offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
