"""The `DBOS` classmethods of SPEC §4: messages, events and streams, with ``_async`` twins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

from perdure.execution.context import current_workflow
from perdure.facade.base import FacadeBase
from perdure.messaging.outgoing import SendMessage
from perdure.serialization import WorkflowSerializationFormat


class MessagingFacade(FacadeBase):
    """Communication between workflows and with the outside world."""

    @classmethod
    def send(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Send ``message`` to workflow ``destination_id``, kept until it calls ``recv``.

        From a workflow the send happens exactly once. From plain code, an
        ``idempotency_key`` (or an enclosing ``SetWorkflowID``) makes retries send it once.

        Args:
            destination_id: The receiving workflow.
            message: The value (stored with the configured serializer).
            topic: The topic ``recv`` takes it from.
            idempotency_key: Sends the message to this destination once, however often it is
                sent with the same key.
            serialization_type: None, ``DEFAULT`` or ``NATIVE`` (the configured serializer);
                ``PORTABLE`` raises `DBOSException` (Perdure does not write DBOS's portable
                format).
            send_to_forks: Also send it to every workflow forked from the destination (and
                forked from those), as they exist when it is sent.

        Raises:
            DBOSNonExistentWorkflowError: No workflow ``destination_id`` exists.
        """
        cls._require_runtime().messaging.send(
            destination_id, message, topic, idempotency_key,
            serialization_type=serialization_type, to_forks=send_to_forks,
        )  # fmt: skip

    @classmethod
    async def send_async(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Async twin of `send`."""
        await _write(
            partial(cls.send, serialization_type=serialization_type, send_to_forks=send_to_forks),
            destination_id, message, topic, idempotency_key,
        )  # fmt: skip

    @classmethod
    def send_bulk(
        cls,
        messages: list[SendMessage],
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Send several messages at once: all are sent, or none (one transaction).

        From a workflow the whole send is one operation, done exactly once. Each message's
        ``idempotency_key`` works as in `send` (keys must differ within one call).

        Args:
            messages: What to send, each a `SendMessage`.
            serialization_type: As in `send` (``PORTABLE`` raises `DBOSException`).
            send_to_forks: Also send each message to every workflow forked from its
                destination (recursively).

        Raises:
            DBOSNonExistentWorkflowError: A destination does not exist (nothing is sent).
        """
        cls._require_runtime().messaging.send_bulk(
            messages, serialization_type=serialization_type, to_forks=send_to_forks
        )

    @classmethod
    async def send_bulk_async(
        cls,
        messages: list[SendMessage],
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """Async twin of `send_bulk`."""
        await _write(
            partial(
                cls.send_bulk, serialization_type=serialization_type, send_to_forks=send_to_forks
            ),
            messages,
        )

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
    def set_event(
        cls, key: str, value: Any, *, serialization_type: WorkflowSerializationFormat | None = None
    ) -> None:
        """From a workflow or its steps: publish ``value`` under ``key`` (replacing it).

        ``serialization_type``: as in `send` (``PORTABLE`` raises `DBOSException`).
        """
        cls._require_runtime().messaging.set_event(
            key, value, serialization_type=serialization_type
        )

    @classmethod
    async def set_event_async(
        cls, key: str, value: Any, *, serialization_type: WorkflowSerializationFormat | None = None
    ) -> None:
        """Async twin of `set_event`."""
        await _write(partial(cls.set_event, serialization_type=serialization_type), key, value)

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
        """Every event ``workflow_id`` has set, by key (in workflow code recorded as a step,
        as in DBOS)."""
        messaging = cls._require_runtime().messaging
        return cls._recorded("DBOS.get_events", lambda: messaging.get_all_events(workflow_id))

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> dict[str, Any]:
        """Async twin of `get_all_events`."""
        messaging = cls._require_runtime().messaging
        return await cls._recorded_async(
            "DBOS.get_events", lambda: messaging.get_all_events(workflow_id)
        )

    @classmethod
    def write_stream(
        cls, key: str, value: Any, *, serialization_type: WorkflowSerializationFormat | None = None
    ) -> None:
        """From a workflow or its steps: append ``value`` to the stream ``key``.

        ``serialization_type``: as in `send` (``PORTABLE`` raises `DBOSException`).
        """
        streams = cls._require_runtime().messaging.streams
        streams.write(key, value, serialization_type=serialization_type)

    @classmethod
    async def write_stream_async(
        cls, key: str, value: Any, *, serialization_type: WorkflowSerializationFormat | None = None
    ) -> None:
        """Async twin of `write_stream`."""
        await _write(partial(cls.write_stream, serialization_type=serialization_type), key, value)

    @classmethod
    def close_stream(cls, key: str) -> None:
        """End the stream ``key``: readers stop after its last value."""
        cls._require_runtime().messaging.streams.write(key, None, close=True)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        """Async twin of `close_stream`."""
        await _write(cls.close_stream, key)

    @classmethod
    def read_stream(
        cls,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[Any]:
        """Yield the values of a workflow's stream in order, from any process.

        Ends when the stream is closed or the writing workflow has finished. Inside a
        workflow each value read is checkpointed (one operation per value, and one for the
        end), so a recovered workflow reads what it read before.

        Args:
            workflow_id: The workflow that writes the stream.
            key: The stream's key.
            offset: The first value to read (0 is the first value written).
            polling_interval_sec: The longest pause between looks at the database while
                waiting (at least 0.001); defaults to the configured
                ``notification_listener_polling_interval_sec``. Waits end sooner on a
                notification.
            timeout_seconds: How long to wait for each next value; None waits as long as
                the writer runs.

        Raises:
            DBOSStreamTimeoutError: No next value within ``timeout_seconds``.
            DBOSNonExistentWorkflowError: No workflow ``workflow_id`` exists.
        """
        return cls._require_runtime().messaging.streams.read(
            workflow_id, key, offset=offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip

    @classmethod
    async def read_stream_async(
        cls,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async twin of `read_stream`: an async generator waiting on the event loop."""
        values = cls._require_runtime().messaging.streams.read_async(
            workflow_id, key, offset=offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip
        async for value in values:
            yield value

    @classmethod
    def read_stream_offset(
        cls,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The value at ``offset`` of a workflow's stream, waiting for it to be written.

        Inside a workflow the value (or the timeout) is checkpointed. Arguments as in
        `read_stream`; ``timeout_seconds=None`` waits as long as the writer runs.

        Raises:
            DBOSStreamTimeoutError: The value was not written within ``timeout_seconds``, or
                the stream ended (closed, or its writer finished) before ``offset``.
        """
        return cls._require_runtime().messaging.streams.read_offset(
            workflow_id, key, offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip

    @classmethod
    async def read_stream_offset_async(
        cls,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """Async twin of `read_stream_offset`: it waits on the event loop."""
        return await cls._require_runtime().messaging.streams.read_offset_async(
            workflow_id, key, offset, polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
        )  # fmt: skip


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
