"""The `DBOS` classmethods of SPEC §4: messages, events and streams, with ``_async`` twins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from perdure.execution.context import current_workflow
from perdure.facade.base import FacadeBase


class MessagingFacade(FacadeBase):
    """Communication between workflows and with the outside world."""

    @classmethod
    def send(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to workflow ``destination_id``, kept until it calls ``recv``.

        From a workflow the send happens exactly once. From plain code, an
        ``idempotency_key`` (or an enclosing ``SetWorkflowID``) makes retries send it once.
        """
        cls._require_runtime().messaging.send(destination_id, message, topic, idempotency_key)

    @classmethod
    async def send_async(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Async twin of `send`."""
        await _write(cls.send, destination_id, message, topic, idempotency_key)

    @classmethod
    def recv(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """In a workflow: the oldest unreceived message on ``topic``, or None on timeout.

        The timeout is durable: after a crash the workflow waits only for what was left.
        """
        return cls._require_runtime().messaging.recv(topic, timeout_seconds)

    @classmethod
    async def recv_async(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Async twin of `recv`: it waits on the event loop, taking no thread."""
        return await cls._require_runtime().messaging.recv_async(topic, timeout_seconds)

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        """From a workflow or its steps: publish ``value`` under ``key`` (replacing it)."""
        cls._require_runtime().messaging.set_event(key, value)

    @classmethod
    async def set_event_async(cls, key: str, value: Any) -> None:
        """Async twin of `set_event`."""
        await _write(cls.set_event, key, value)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The value ``workflow_id`` set for ``key``, waiting for it; None on timeout.

        Inside a workflow the result (and the timeout) is checkpointed.
        """
        return cls._require_runtime().messaging.get_event(workflow_id, key, timeout_seconds)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Async twin of `get_event`: it waits on the event loop, taking no thread."""
        messaging = cls._require_runtime().messaging
        return await messaging.get_event_async(workflow_id, key, timeout_seconds)

    @classmethod
    def get_all_events(cls, workflow_id: str) -> dict[str, Any]:
        """Every event ``workflow_id`` has set, by key."""
        return cls._require_runtime().messaging.get_all_events(workflow_id)

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> dict[str, Any]:
        """Async twin of `get_all_events`."""
        return await asyncio.to_thread(cls.get_all_events, workflow_id)

    @classmethod
    def write_stream(cls, key: str, value: Any) -> None:
        """From a workflow or its steps: append ``value`` to the stream ``key``."""
        cls._require_runtime().messaging.write_stream(key, value)

    @classmethod
    async def write_stream_async(cls, key: str, value: Any) -> None:
        """Async twin of `write_stream`."""
        await _write(cls.write_stream, key, value)

    @classmethod
    def close_stream(cls, key: str) -> None:
        """End the stream ``key``: readers stop after its last value."""
        cls._require_runtime().messaging.write_stream(key, None, close=True)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        """Async twin of `close_stream`."""
        await _write(cls.close_stream, key)

    @classmethod
    def read_stream(cls, workflow_id: str, key: str) -> Iterator[Any]:
        """Yield the values of a workflow's stream in order, from any process.

        Ends when the stream is closed or the writing workflow has finished.
        """
        return cls._require_runtime().messaging.read_stream(workflow_id, key)

    @classmethod
    async def read_stream_async(cls, workflow_id: str, key: str) -> AsyncIterator[Any]:
        """Async twin of `read_stream`: an async generator waiting on the event loop."""
        messaging = cls._require_runtime().messaging
        async for value in messaging.read_stream_async(workflow_id, key):
            yield value


async def _write(operation: Callable[..., None], *args: Any) -> None:
    """Run a messaging write from async code.

    Inside a workflow it runs here, on the loop: it takes the workflow's next position, which
    must happen in program order (``asyncio.gather`` of two sends replays identically), and
    its one statement is a short blocking call like every checkpoint of an async workflow.
    Elsewhere it runs on a worker thread, off the loop.
    """
    if current_workflow() is not None:
        operation(*args)
    else:
        await asyncio.to_thread(operation, *args)
