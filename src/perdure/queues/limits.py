"""The pure arithmetic of flow control: how many queued workflows may start now, and when next.

No database and no clock here: callers pass what they read and the current time, so every
decision is a plain function that unit tests check directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from perdure.storage.records import Occupancy, ScopeLimits

# An idle dequeue loop waits its polling interval, doubling while queues stay idle up to this
# many intervals; any enqueue in this process (or, on PostgreSQL, in any) wakes it at once.
MAX_IDLE_BACKOFF = 5.0


@dataclass(frozen=True)
class QueueLimits:
    """A queue's limits by scope: over the whole queue, and over each partition of it."""

    whole: ScopeLimits = field(default_factory=ScopeLimits)
    partition: ScopeLimits = field(default_factory=ScopeLimits)


def admissible(limits: QueueLimits, occupancy: Occupancy, *, now_ms: int, batch: int) -> int:
    """How many more workflows may start now: the tightest of every limit, at most ``batch``.

    ``occupancy`` is the whole queue's, or one partition's with the whole queue's as its
    ``whole``; partition limits apply only to the latter.
    """
    whole = occupancy.whole if occupancy.whole is not None else occupancy
    allowed = min(batch, scope_room(limits.whole, whole, now_ms=now_ms))
    if occupancy.whole is not None:
        allowed = min(allowed, scope_room(limits.partition, occupancy, now_ms=now_ms))
    return max(0, allowed)


def scope_room(limits: ScopeLimits, occupancy: Occupancy, *, now_ms: int) -> int:
    """How many more may start under one scope's limits (negative when over them)."""
    allowed = 1 << 62
    if limits.concurrency is not None:
        allowed = min(allowed, limits.concurrency - occupancy.running)
    if limits.worker_concurrency is not None:
        allowed = min(allowed, limits.worker_concurrency - occupancy.running_here)
    period_ms = limits.rate_period_ms
    if limits.rate_limit is not None and period_ms is not None:
        recent = starts_in_window(occupancy.recent_starts_ms, now_ms, period_ms)
        allowed = min(allowed, limits.rate_limit - recent)
    return allowed


def starts_in_window(starts_ms: Sequence[int], now_ms: int, period_ms: int) -> int:
    """How many starts count against the window of ``period_ms`` ending now.

    Starts stamped after ``now_ms`` (another process's clock running ahead) count too.
    """
    return sum(1 for start in starts_ms if start > now_ms - period_ms)


def rate_limits_free_at(limits: QueueLimits, occupancy: Occupancy) -> int | None:
    """When the rate limiters holding ``occupancy`` back next admit a start; None if none is
    full (a finishing workflow, not time, frees the other limits)."""
    whole = occupancy.whole if occupancy.whole is not None else occupancy
    scopes = [(limits.whole, whole)]
    if occupancy.whole is not None:
        scopes.append((limits.partition, occupancy))
    frees = [
        rate_limit_frees_at(scope, held.recent_starts_ms, held.now_ms) for scope, held in scopes
    ]
    known = [at for at in frees if at is not None]
    return max(known) if known else None


def rate_limit_frees_at(limits: ScopeLimits, starts_ms: Sequence[int], now_ms: int) -> int | None:
    """When one scope's rate limiter next admits a start, if it is full now; else None.

    A start made at ``t`` stops counting at ``t + period``: the window is full until enough of
    the oldest starts in it have aged out to leave one free slot.
    """
    period = limits.rate_period_ms
    if limits.rate_limit is None or period is None:
        return None
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
