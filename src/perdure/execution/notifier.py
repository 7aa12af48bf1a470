"""In-process wake-ups: a waiter sleeps until its channel is signalled or its time is up."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from perdure import clock

T = TypeVar("T")

# Waits start re-checking the database this soon and back off to the polling interval: the
# fallback for writes that no signal announces (another process, on SQLite).
_FIRST_RECHECK_SEC = 0.01


def channel(kind: str, workflow_id: str, key: str = "") -> str:
    """The channel name of a wake-up; matches the payload of Postgres notifications."""
    return f"{kind}|{workflow_id}|{key}"


class Notifier:
    """Counts signals per channel; waiters re-check their condition whenever one arrives.

    Only watched channels are counted (those of a current `wait_for`, and those a loop
    `mark`s): one channel per workflow ever signalled would otherwise grow without bound.
    A signal may carry a value (a handed-off message), kept for the waiter to `take`.
    """

    def __init__(self, poll_interval_sec: float) -> None:
        self.poll_interval_sec = poll_interval_sec
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}
        self._watchers: dict[str, int] = {}  # channel -> waits in progress on it
        self._marked: set[str] = set()  # channels of long-lived loops, always counted
        self._everything = 0  # bumped by signal_all: every waiter re-checks
        self._values: dict[str, object] = {}  # watched channel -> value its last signal carried
        # Waits on event loops: each is woken on its own loop, not by the condition.
        self._async_waiters: list[_AsyncWaiter] = []

    def signal(self, name: str, value: object | None = None) -> None:
        """Wake the waiters of channel ``name``, leaving them ``value`` if given."""
        with self._cond:
            if name in self._watchers or name in self._marked:
                self._counts[name] = self._counts.get(name, 0) + 1
                if value is not None:
                    self._values[name] = value
                self._cond.notify_all()
                for waiter in self._async_waiters:
                    if name in waiter.names:
                        waiter.wake()

    def take(self, name: str) -> object | None:
        """The value a signal of watched channel ``name`` carried (once), if any."""
        with self._cond:
            return self._values.pop(name, None)

    def _watch(self, names: tuple[str, ...], delta: int) -> None:
        for name in names:
            left = self._watchers.get(name, 0) + delta
            if left > 0:
                self._watchers[name] = left
                continue
            self._watchers.pop(name, None)
            self._values.pop(name, None)
            if name not in self._marked:
                self._counts.pop(name, None)

    def signal_all(self) -> None:
        """Wake every waiter (after a reconnect, a cancellation, a shutdown)."""
        with self._cond:
            self._everything += 1
            self._cond.notify_all()
            for waiter in self._async_waiters:
                waiter.wake()

    def mark(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """The signal counts of ``names`` now, for a later `wait_changed`."""
        with self._cond:
            self._marked.update(names)
            return self._snapshot(names)

    def wait_changed(self, names: tuple[str, ...], seen: tuple[int, ...], timeout: float) -> bool:
        """Wait until one of ``names`` is signalled after `mark` returned ``seen`` (True), or
        ``timeout`` seconds pass (False). Marking before the work that precedes the wait means
        a signal sent meanwhile is never lost.
        """
        with self._cond:
            return self._cond.wait_for(partial(self._changed, names, seen), timeout=timeout)

    def _snapshot(self, names: tuple[str, ...]) -> tuple[int, ...]:
        return (self._everything, *(self._counts.get(n, 0) for n in names))

    def _changed(self, names: tuple[str, ...], seen: tuple[int, ...]) -> bool:
        return self._snapshot(names) != seen

    def wait_for(
        self,
        names: tuple[str, ...],
        check: Callable[[], T | None],
        *,
        deadline: float | None,
        interrupted: Callable[[], None] | None = None,
        poll_interval_sec: float | None = None,
    ) -> T | None:
        """Return ``check()``'s first non-None value, or None once ``deadline`` passes.

        ``deadline`` is a `perdure.clock.monotonic` value (None: no limit): it follows
        workflow time, and a test moving workflow time wakes the wait. ``interrupted`` runs
        after each wake-up and may raise (a cancellation) to abandon the wait.
        ``poll_interval_sec`` replaces the notifier's longest wait between checks.
        """
        with self._cond:
            self._watch(names, +1)  # before the first check: no signal after it is missed
        try:
            poll = poll_interval_sec or self.poll_interval_sec
            return self._wait_for(names, check, deadline, interrupted, poll)
        finally:
            with self._cond:
                self._watch(names, -1)

    def _wait_for(
        self,
        names: tuple[str, ...],
        check: Callable[[], T | None],
        deadline: float | None,
        interrupted: Callable[[], None] | None,
        poll: float,
    ) -> T | None:
        recheck = min(_FIRST_RECHECK_SEC, poll)
        with _TimeWatch(self.signal_all, deadline) as blocked:
            while True:
                with self._cond:
                    seen = self._snapshot(names)
                value = check()
                if value is not None:
                    return value
                blocked.block()
                timeout = _next_wait(recheck, deadline)
                if timeout is None:
                    return None
                with self._cond:
                    self._cond.wait_for(partial(self._changed, names, seen), timeout=timeout)
                if interrupted is not None:
                    interrupted()
                recheck = min(recheck * 2, poll)

    async def wait_for_async(
        self,
        names: tuple[str, ...],
        check: Callable[[], T | None],
        *,
        deadline: float | None,
        interrupted: Callable[[], None] | None = None,
        poll_interval_sec: float | None = None,
    ) -> T | None:
        """`wait_for` on the running event loop: the wait takes no thread.

        ``check`` runs on the loop (a short database read, like every statement of an async
        workflow); between checks the coroutine awaits a wake-up scheduled on its loop.
        """
        waiter = _AsyncWaiter(frozenset(names), asyncio.get_running_loop())
        with self._cond:
            self._watch(names, +1)  # before the first check: no signal after it is missed
            self._async_waiters.append(waiter)
        try:
            poll = poll_interval_sec or self.poll_interval_sec
            return await self._wait_for_async(waiter, check, deadline, interrupted, poll)
        finally:
            with self._cond:
                self._async_waiters.remove(waiter)
                self._watch(names, -1)

    async def _wait_for_async(
        self,
        waiter: _AsyncWaiter,
        check: Callable[[], T | None],
        deadline: float | None,
        interrupted: Callable[[], None] | None,
        poll: float,
    ) -> T | None:
        recheck = min(_FIRST_RECHECK_SEC, poll)
        with _TimeWatch(self.signal_all, deadline) as blocked:
            while True:
                waiter.event.clear()  # a signal from here on sets it again
                value = check()
                if value is not None:
                    return value
                blocked.block()
                timeout = _next_wait(recheck, deadline)
                if timeout is None:
                    return None
                # A timeout means "look again": polling covers writes no signal announces.
                # (asyncio's TimeoutError is not the builtin one before Python 3.11.)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter.event.wait(), timeout)
                if interrupted is not None:
                    interrupted()
                recheck = min(recheck * 2, poll)


class _TimeWatch:
    """A wait with a deadline, registered with `clock.watching` once it first blocks (its
    first check found nothing): a test moving workflow time then wakes it. Registered before
    the time left is read, so no move is missed; kept until the wait ends."""

    __slots__ = ("_deadline", "_wake", "_watch")

    def __init__(self, wake: Callable[[], None], deadline: float | None) -> None:
        self._wake = wake
        self._deadline = deadline
        self._watch: contextlib.AbstractContextManager[None] | None = None

    def block(self) -> None:
        if self._watch is None and self._deadline is not None:
            self._watch = clock.watching(self._wake, deadline=self._deadline)
            self._watch.__enter__()

    def __enter__(self) -> _TimeWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._watch is not None:
            self._watch.__exit__(None, None, None)


def _next_wait(recheck: float, deadline: float | None) -> float | None:
    """How long to wait before checking again; None once ``deadline`` has passed."""
    if deadline is None:
        return recheck
    remaining = deadline - clock.monotonic()
    return None if remaining <= 0 else min(recheck, remaining)


class _AsyncWaiter:
    """A wait on an event loop: signals from any thread set its event on that loop."""

    __slots__ = ("event", "loop", "names")

    def __init__(self, names: frozenset[str], loop: asyncio.AbstractEventLoop) -> None:
        self.names = names
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop closed: the wait is over anyway
            self.loop.call_soon_threadsafe(self.event.set)
