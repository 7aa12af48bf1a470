"""What a PostgreSQL notification wakes in this process: a channel, and perhaps a message."""

from __future__ import annotations

import base64
import binascii

from perdure.execution.notifier import Notifier
from perdure.logs import get_logger
from perdure.storage.records import Payload

logger = get_logger(__name__)


def wake_up(note: str) -> tuple[str, Payload | None]:
    """The local channel a notification wakes, and the message it carries if any.

    Most notifications are a channel name. A hand-off's is "recv|<workflow>|<position>|<format>|
    <base64 message>" (the last two empty when the message was too long to carry): the
    receiver's channel is its first three fields. A malformed one only wakes its channel.
    """
    if not note.startswith("recv|") or note.count("|") < 4:
        return note, None
    name, serialization, data = note.rsplit("|", 2)
    if not serialization:
        return name, None
    try:
        return name, Payload(base64.b64decode(data), serialization)
    except (binascii.Error, ValueError):
        logger.warning("Ignored the payload of a malformed hand-off notification for %s", name)
        return name, None


def deliver(notifier: Notifier, note: str) -> None:
    """Wake what ``note`` names in this process."""
    notifier.signal(*wake_up(note))
