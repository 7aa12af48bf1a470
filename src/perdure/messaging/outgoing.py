"""What a send is given (`SendMessage`), and the IDs that make sends idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from perdure.error import DBOSException


@dataclass
class SendMessage:
    """One message of `DBOS.send_bulk` (fields in DBOS's order, so positional calls work).

    Attributes:
        destination_id: The workflow the message is for.
        message: The value sent (stored with the configured serializer).
        topic: The topic ``recv`` takes it from; None is the default topic.
        idempotency_key: Makes the message to this destination sent once, however often it
            is sent again (from any process, inside or outside workflows).
    """

    destination_id: str
    message: Any
    topic: str | None = None
    idempotency_key: str | None = None


def checked_messages(messages: Sequence[SendMessage]) -> list[SendMessage]:
    """``messages`` as a list, after refusing what `send_bulk` cannot send."""
    checked = list(messages)
    for message in checked:
        if not isinstance(message, SendMessage):
            raise DBOSException(
                f"send_bulk takes a list of SendMessage, not {type(message).__name__!r}: build "
                "each as SendMessage(destination_id, message, topic=None, idempotency_key=None)."
            )
    keys = [m.idempotency_key for m in checked if m.idempotency_key is not None]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise DBOSException(
            f"send_bulk was given duplicate idempotency keys ({', '.join(map(repr, repeated))}),"
            " so all but one of those messages would be dropped. Give each message its own "
            "key; nothing was sent."
        )
    return checked


def message_id(
    destination_id: str,
    idempotency_key: str | None,
    *,
    origin: str | None,
    index: int | None = None,
) -> str:
    """The ID a message is stored under; a second send with the same ID delivers nothing.

    An idempotency key names the message for its destination, wherever it is sent from.
    Otherwise ``origin`` does: the sending execution's position (`workflow_origin`) or the
    ``SetWorkflowID`` around a send from plain code (``"{destination}|{id}"``). ``index``
    tells apart the messages of one bulk send. Without either, every send is a new message.
    """
    if idempotency_key is not None:
        return f"{destination_id}|{idempotency_key}"
    if origin is None:
        return str(uuid.uuid4())
    return origin if index is None else f"{origin}.{index}"


def workflow_origin(workflow_id: str, position: int, owner_token: int) -> str:
    """What names a message sent from a workflow: ``"{workflow}-{position}@{owner token}"``.

    A retried attempt of the same execution sends under the same ID, so the message is
    stored once; a replay sends nothing (the send's step is recorded with its message). The
    token tells apart the run of a rewound workflow, whose sends past the cut are new
    messages, as in DBOS.
    """
    return f"{workflow_id}-{position}@{owner_token}"
