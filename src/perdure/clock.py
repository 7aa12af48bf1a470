"""The one seam through which Perdure reads workflow time, and waits on it.

Perdure knows two kinds of time:

- **workflow time**: what workflow code and its waits follow. Durable sleeps, the timeouts of
  ``recv`` / ``get_event`` / stream reads, workflow deadlines, queue delays and rate-limit
  windows, schedule ticks and debounce windows are all read here. It is the machine's clock,
  unless a test installed a time source (`perdure.testing.VirtualClock`) that moves it ahead.
- **real time**: what proves liveness (heartbeats, ownership locks, takeover timeouts, the
  backoff of database retries, listener reconnects). That code reads `time` and the database's
  clock directly, never this module: a test that moves workflow time thirty days ahead never
  makes a process think its own leases expired.

Without an installed source every function here is the plain clock read or wait it replaces,
behind one check of a module variable. A source is installed only by `perdure.testing`; it
moves workflow time ahead of real time by an offset (workflow time still flows at the real
pace between moves), and wakes every wait registered with `watching` when it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

# A wait under an installed source looks at its stop event this often (a cancellation from
# another thread): moves of the source wake it at once, a stop event cannot.
_STOP_POLL_SEC = 0.02


class TimeSource(Protocol):
    """What moves workflow time ahead of real time (`perdure.testing.VirtualClock`)."""

    @property
    def offset_ms(self) -> int:
        """How far workflow time is ahead of real time, in milliseconds."""

    def watch(self, wake: Callable[[], None], due_ms: int | None) -> object:
        """Call ``wake`` (from any thread) whenever workflow time moves, until `unwatch`;
        ``due_ms`` is when the wait ends by itself (None: a loop with no end of its own)."""

    def unwatch(self, token: object) -> None:
        """Stop calling the ``wake`` that `watch` returned ``token`` for."""


# The installed source (tests only); None in production: workflow time is the wall clock.
_source: TimeSource | None = None
_install_lock = threading.Lock()


def install(source: TimeSource) -> None:
    """Make ``source`` govern workflow time (`perdure.testing` calls this).

    Raises:
        RuntimeError: Another source is installed.
    """
    global _source  # noqa: PLW0603 - the seam's one switch, flipped only by perdure.testing
    with _install_lock:
        if _source is not None and _source is not source:
            raise RuntimeError(
                "Another virtual clock governs workflow time already: uninstall it first "
                "(one clock per process at a time)."
            )
        _source = source


def uninstall(source: TimeSource) -> None:
    """Give workflow time back to the wall clock, if ``source`` governs it."""
    global _source  # noqa: PLW0603 - see install
    with _install_lock:
        if _source is source:
            _source = None


def installed() -> TimeSource | None:
    """The source governing workflow time, or None (the wall clock)."""
    return _source


def now_ms() -> int:
    """Workflow time as integer epoch milliseconds, the unit stored in the database."""
    source = _source
    if source is None:
        return time.time_ns() // 1_000_000
    return time.time_ns() // 1_000_000 + source.offset_ms


def offset_ms() -> int:
    """How far workflow time is ahead of real time: 0 unless a test moved it.

    Statements that judge due-ness by the database's clock add it, so they follow workflow
    time too.
    """
    source = _source
    return 0 if source is None else source.offset_ms


def monotonic() -> float:
    """Workflow time in seconds for measuring waits: `time.monotonic`, moved as workflow time
    is. The deadline of every wait that follows workflow time is a value of this clock."""
    source = _source
    if source is None:
        return time.monotonic()
    return time.monotonic() + source.offset_ms / 1000


def deadline_at(epoch_ms: int) -> float:
    """The `monotonic` deadline of a wait that ends when workflow time reaches ``epoch_ms``.

    Computed from the real clocks alone (the offset cancels out), so a move of workflow time
    while it is computed cannot skew it.
    """
    return time.monotonic() + (epoch_ms - time.time_ns() // 1_000_000) / 1000


class _Unwatched:
    """`watching` without a source: nothing to register."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_UNWATCHED = _Unwatched()


class _Watch:
    """A wait registered with the source for as long as the ``with`` block lasts."""

    def __init__(self, source: TimeSource, wake: Callable[[], None], deadline: float | None):
        self._source = source
        self._wake = wake
        self._deadline = deadline
        self._token: object = None

    def __enter__(self) -> None:
        due_ms = None
        if self._deadline is not None:  # the offset cancels out, as in `deadline_at`
            left_ms = round((self._deadline - time.monotonic()) * 1000)
            due_ms = time.time_ns() // 1_000_000 + left_ms
        self._token = self._source.watch(self._wake, due_ms)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._source.unwatch(self._token)


def watching(
    wake: Callable[[], None], *, deadline: float | None = None
) -> contextlib.AbstractContextManager[None]:
    """Around a wait that follows workflow time: a move of workflow time calls ``wake``.

    ``wake`` must make the wait look at the time again (signal its condition). ``deadline``
    (a `monotonic` value) is when the wait ends by itself, None for a loop that waits again
    and again. Enter it before reading the time the wait is computed from, so no move is
    missed. Without an installed source it does nothing.
    """
    source = _source
    if source is None:
        return _UNWATCHED
    return _Watch(source, wake, deadline)


def wait_until(event: threading.Event, at_ms: int) -> bool:
    """Wait until ``event`` is set or workflow time reaches ``at_ms``; whether it is set.

    Under a source it may return early, when workflow time moves: callers loop.
    """
    source = _source
    if source is None:
        return event.wait(max(0.0, (at_ms - now_ms()) / 1000))
    moved = threading.Event()
    deadline = deadline_at(at_ms)
    with watching(moved.set, deadline=deadline):
        while not event.is_set() and not moved.is_set():
            left = deadline - monotonic()
            if left <= 0:
                break
            moved.wait(min(left, _STOP_POLL_SEC))
    return event.is_set()


async def sleep_until_async(at_ms: int, *, at_most_sec: float) -> None:
    """``asyncio.sleep`` until workflow time reaches ``at_ms``, but no longer than
    ``at_most_sec``. Under a source it may return early, when workflow time moves: callers
    loop."""
    source = _source
    if source is None:
        await asyncio.sleep(min(max(0.0, (at_ms - now_ms()) / 1000), at_most_sec))
        return
    loop = asyncio.get_running_loop()
    moved = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # its loop closed: the sleep is over anyway
            loop.call_soon_threadsafe(moved.set)

    deadline = deadline_at(at_ms)
    with watching(wake, deadline=deadline):
        left = min(deadline - monotonic(), at_most_sec)
        if left > 0:
            # (asyncio's TimeoutError is not the builtin one before Python 3.11.)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(moved.wait(), left)
