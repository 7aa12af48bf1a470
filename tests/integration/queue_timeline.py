"""A thread-safe record of when workflow bodies ran, to check how many overlapped."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Timeline:
    """Start and end times (monotonic seconds) of labelled runs, in start order."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    starts: list[tuple[str, str, float]] = field(default_factory=list)  # (label, group, time)
    ends: dict[str, float] = field(default_factory=dict)

    def start(self, label: str, group: str = "") -> None:
        with self._lock:
            self.starts.append((label, group, time.monotonic()))

    def end(self, label: str) -> None:
        with self._lock:
            self.ends[label] = time.monotonic()

    def started(self, group: str | None = None) -> list[str]:
        with self._lock:
            return [label for label, g, _ in self.starts if group is None or g == group]

    def running(self, group: str | None = None) -> int:
        """How many runs (of ``group``, or of all) have started and not ended."""
        with self._lock:
            return sum(
                1
                for label, g, _ in self.starts
                if (group is None or g == group) and label not in self.ends
            )

    def max_overlap(self, group: str | None = None) -> int:
        """The most runs (of ``group``, or of all) in progress at any one moment."""
        with self._lock:
            events = []
            for label, g, at in self.starts:
                if group is None or g == group:
                    events += [(at, 1), (self.ends.get(label, float("inf")), -1)]
        best = current = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts on ties
            current += delta
            best = max(best, current)
        return best
