"""What a PostgreSQL notification wakes in this process: a hint, never a value.

Any role that can connect may send a notification on any channel, so a note is trusted only as
"look again": it names the channel of what changed ("<kind>|<workflow>|<key>") and the waiters
of that channel re-read the database. A note of a kind Perdure never sends, or one a waiter
could not match, changes nothing. The database sends "*" when a note would be too long.
"""

from __future__ import annotations

import threading

from perdure.execution.notifier import Notifier
from perdure.logs import get_logger

logger = get_logger(__name__)

# The kinds of note the database's triggers send (see the PostgreSQL migrations).
KINDS = frozenset({"msg", "recv", "event", "stream", "end", "queue"})
WAKE_ALL = "*"


class WakeUps:
    """Hands each notification to the notifier as a hint; reports the first stranger note."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._lock = threading.Lock()
        self._ignored = 0

    @property
    def ignored(self) -> int:
        """How many notes were not of a kind Perdure sends."""
        return self._ignored

    def __call__(self, note: str) -> None:
        if note == WAKE_ALL:
            self._notifier.signal_all()
        elif note.partition("|")[0] in KINDS:
            self._notifier.signal(note)
        else:
            self._ignore(note)

    def _ignore(self, note: str) -> None:
        with self._lock:
            self._ignored += 1
            first = self._ignored == 1
        if first:  # once per process: a flood of forged notes must not flood the log too
            logger.warning(
                "Ignored a notification on the 'perdure' channel that Perdure did not send "
                "(%r); further ones are counted, not logged. Another client of this database "
                "is notifying on Perdure's channel.",
                note[:100],
            )
