"""Reads the text of a PostgreSQL notification: a channel name, and perhaps an authenticated
message.

Any role that can connect may NOTIFY on Perdure's channel, so a note is only a hint, except a
hand-off's: "<channel>|<owner token>|<base64 format>|<base64 message>|<HMAC-SHA256 hex>",
signed by the trigger under the key in ``perdure.notification_key`` (readable only by roles
with rights on Perdure's tables); format and message are empty when the message is too long
to carry. A note whose MAC does not verify is read as a hint: it wakes the channel it names,
whose receiver then reads its step from the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from perdure.logs import FirstOnly, get_logger
from perdure.storage.records import HandedMessage, Payload

logger = get_logger(__name__)

HAND_OFF_PREFIX = "recv|"
_SIGNED_FIELDS = 4  # owner token, format, message, MAC


class NoteReader:
    """Splits notes into channel and message; counts (and logs once) those that fail the MAC.

    Args:
        key: The database's notification key; None: no note carries a message.
    """

    def __init__(self, key: bytes | None) -> None:
        self._key = key
        self._forged = FirstOnly(
            logger,
            "A hand-off notification for %r does not carry a valid signature: its message was "
            "ignored and the receiver reads the database instead. Another client of this "
            "database is notifying on Perdure's channel (further ones are counted, not logged).",
        )

    @property
    def forged(self) -> int:
        """How many hand-off notes failed their MAC."""
        return self._forged.count

    def read(self, note: str) -> tuple[str, HandedMessage | None]:
        """The channel ``note`` wakes, and the message it carries if its MAC verifies."""
        if not note.startswith(HAND_OFF_PREFIX) or note.count("|") < 2 + _SIGNED_FIELDS:
            return note, None
        signed, _, mac = note.rpartition("|")
        channel, token, fmt, message = signed.rsplit("|", _SIGNED_FIELDS - 1)
        if self._key is None or not hmac.compare_digest(
            hmac.new(self._key, signed.encode(), hashlib.sha256).hexdigest(), mac
        ):
            self._forged(channel[:200])
            return channel, None
        if not fmt:  # too long to carry: the receiver reads its step
            return channel, None
        try:
            payload = Payload(base64.b64decode(message), base64.b64decode(fmt).decode())
            return channel, HandedMessage(payload, int(token))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            # Signed but unreadable: a bug, not an attack. The receiver reads its step instead.
            logger.exception("Could not read the message of a signed hand-off for %s", channel)
            return channel, None
