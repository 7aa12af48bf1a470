"""What a PostgreSQL notification wakes in this process: a channel, perhaps with a message.

Any role that can connect may send a notification on any channel, so a note is trusted only as
"look again": its channel's waiters re-read the database. The storage layer passes a value
along only when the note was signed by the database (a hand-off's message), and the receiver
uses it only if it names the receiver's own owner token. A note of a kind Perdure never sends
changes nothing.
"""

from __future__ import annotations

from perdure.execution.notifier import Notifier
from perdure.logs import FirstOnly, get_logger
from perdure.storage.records import HandedMessage

logger = get_logger(__name__)

# The kinds of note the database's triggers send (see the PostgreSQL migrations).
KINDS = frozenset({"msg", "recv", "event", "stream", "end", "queue"})
WAKE_ALL = "*"


class WakeUps:
    """Hands each notification to the notifier; reports the first stranger note."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._stranger = FirstOnly(
            logger,
            "Ignored a notification on the 'perdure' channel that Perdure did not send (%r); "
            "further ones are counted, not logged. Another client of this database is "
            "notifying on Perdure's channel.",
        )

    @property
    def ignored(self) -> int:
        """How many notes were not of a kind Perdure sends."""
        return self._stranger.count

    def __call__(self, name: str, handed: HandedMessage | None) -> None:
        if name == WAKE_ALL:
            self._notifier.signal_all()
        elif name.partition("|")[0] in KINDS:
            self._notifier.signal(name, handed)
        else:
            self._stranger(name[:100])
