"""The pure arithmetic of flow control: how many queued workflows may start now, and when next.

No database and no clock here: callers pass what they read and the current time, so every
decision is a plain function that unit tests check directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perdure.storage.records import Occupancy

# An idle dequeue loop waits its polling interval, doubling while queues stay idle up to this
# many intervals; any enqueue in this process (or, on PostgreSQL, in any) wakes it at once.
MAX_IDLE_BACKOFF = 5.0


@dataclass(frozen=True)
class FlowLimits:
    """The limits of one queue (applied per partition on partitioned queues)."""

    concurrency: int | None = None  # running at once, across all processes
    worker_concurrency: int | None = None  # running at once in one process
    rate_limit: int | None = None  # starts ...
    rate_period_ms: int | None = None  # ... in any window of this length

    @property
    def counts_running(self) -> bool:
        """Whether a decision needs the running counts."""
        return self.concurrency is not None or self.worker_concurrency is not None

    @property
    def is_global(self) -> bool:
        """Whether claims by different processes must not overlap to keep these limits."""
        return self.concurrency is not None or self.rate_limit is not None


def admissible(limits: FlowLimits, occupancy: Occupancy, *, now_ms: int, batch: int) -> int:
    """How many more workflows may start now: the tightest of every limit, at most ``batch``."""
    allowed = batch
    if limits.concurrency is not None:
        allowed = min(allowed, limits.concurrency - occupancy.running)
    if limits.worker_concurrency is not None:
        allowed = min(allowed, limits.worker_concurrency - occupancy.running_here)
    if limits.rate_limit is not None and limits.rate_period_ms is not None:
        recent = starts_in_window(occupancy.recent_starts_ms, now_ms, limits.rate_period_ms)
        allowed = min(allowed, limits.rate_limit - recent)
    return max(0, allowed)


def starts_in_window(starts_ms: Sequence[int], now_ms: int, period_ms: int) -> int:
    """How many starts count against the window of ``period_ms`` ending now.

    Starts stamped after ``now_ms`` (another process's clock running ahead) count too.
    """
    return sum(1 for start in starts_ms if start > now_ms - period_ms)


def rate_limit_frees_at(limits: FlowLimits, starts_ms: Sequence[int], now_ms: int) -> int | None:
    """When the rate limiter next admits a start, if it is full now; else None.

    A start made at ``t`` stops counting at ``t + period``: the window is full until enough of
    the oldest starts in it have aged out to leave one free slot.
    """
    if limits.rate_limit is None or limits.rate_period_ms is None:
        return None
    period = limits.rate_period_ms
    recent = sorted(s for s in starts_ms if s > now_ms - period)
    excess = len(recent) - limits.rate_limit
    if excess < 0:
        return None
    return recent[excess] + period


def most_starts_in_any_window(starts_ms: Sequence[int], period_ms: int) -> int:
    """The largest number of starts within any window ``[t, t + period_ms)`` (for audits)."""
    ordered = sorted(starts_ms)
    best = first = 0
    for last, start in enumerate(ordered):
        while start - ordered[first] >= period_ms:
            first += 1
        best = max(best, last - first + 1)
    return best


def idle_wait_sec(polling_interval_sec: float, idle_passes: int) -> float:
    """How long an idle dequeue loop sleeps after ``idle_passes`` passes that started nothing."""
    factor = min(2.0 ** max(0, idle_passes - 1), MAX_IDLE_BACKOFF)
    return polling_interval_sec * factor
