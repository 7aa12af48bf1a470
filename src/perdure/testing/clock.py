"""A virtual clock for tests: workflow time that the test moves forward, and no real waiting."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType

from typing_extensions import Self

from perdure import clock
from perdure.dbos import DBOS
from perdure.error import DBOSInitializationError
from perdure.execution.context import current_workflow_id


@dataclass(frozen=True)
class Timer:
    """A wait on workflow time in progress.

    Attributes:
        workflow_id: The workflow waiting (a ``DBOS.sleep``, or the timeout of ``recv``,
            ``get_event`` or a stream read), or None for Perdure's own loops (the queue and
            schedule loops) and for waits outside workflows.
        due: When the wait ends by itself, or None for a loop that waits again and again.
    """

    workflow_id: str | None
    due: datetime | None


@dataclass(frozen=True)
class _Watch:
    wake: Callable[[], None]
    due_ms: int | None
    workflow_id: str | None


class VirtualClock:
    """Workflow time for tests: it runs at the real pace, and jumps when the test advances it.

    Installed (``with VirtualClock() as clock:``, `install`, or the ``perdure_clock`` pytest
    fixture), it governs everything Perdure times for workflows: ``DBOS.sleep`` and
    ``sleep_async``, the timeouts of ``recv``, ``get_event`` and stream reads, workflow
    timeouts (``SetWorkflowTimeout``), queue delays (``delay_seconds``,
    ``set_workflow_delay``) and rate-limit windows, schedule ticks and debounce windows.
    `advance` moves it forward: every wait it governs wakes at once, and what fell due runs as
    it would in production, durably (recorded wake-up times and deadlines are in workflow
    time); each schedule tick a move passes over runs (up to 1000 per schedule and move).
    Nothing waits for the real time it skips. Advance once the workflow waits
    (`wait_for_timer`): a wait that begins after a move counts from the new time.

    Liveness stays on real time: heartbeats, ownership, the takeover of dead processes and the
    retries of database errors never see the jump, so advancing thirty days does not make a
    process think its own leases expired. Nor do waits that are not workflow time: step
    retries' backoff and async steps' ``timeout_seconds`` run on real time.

    One clock governs the process at a time. Install it before ``DBOS.launch()`` (the
    fixtures do), so the schedule loop's first ticks are computed on it. Without an installed
    clock, Perdure reads the machine's clock (`perdure.clock`).

    Args:
        start: The workflow time to start from (an aware datetime); by default, now.

    Raises:
        ValueError: ``start`` is a naive datetime.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # timers came, went, or time moved
        self._offset_ms = 0 if start is None else _epoch_ms(start) - _real_ms()
        self._watches: dict[int, _Watch] = {}
        self._tokens = itertools.count()

    # -- what the seam asks (perdure.clock.TimeSource) ----------------------------------------

    @property
    def offset_ms(self) -> int:
        """How far workflow time is ahead of real time, in milliseconds."""
        return self._offset_ms

    def watch(self, wake: Callable[[], None], due_ms: int | None) -> object:
        """Call ``wake`` whenever the clock moves, until `unwatch` (see `perdure.clock`)."""
        entry = _Watch(wake, due_ms, current_workflow_id())
        with self._changed:
            token = next(self._tokens)
            self._watches[token] = entry
            self._changed.notify_all()
        return token

    def unwatch(self, token: object) -> None:
        """Forget the wait `watch` returned ``token`` for."""
        if not isinstance(token, int):
            return  # not one of ours
        with self._changed:
            self._watches.pop(token, None)
            self._changed.notify_all()

    # -- installing ------------------------------------------------------------------------

    def install(self) -> Self:
        """Govern workflow time in this process from now on.

        Raises:
            RuntimeError: Another clock is installed.
        """
        clock.install(self)
        _wake_launched_app()  # its loops wait on the machine's clock until they look again
        return self

    def uninstall(self) -> None:
        """Give workflow time back to the machine's clock (a no-op if not installed)."""
        clock.uninstall(self)
        self._wake_all()

    @property
    def installed(self) -> bool:
        """Whether this clock governs workflow time now."""
        return clock.installed() is self

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    # -- reading and moving ----------------------------------------------------------------

    def now(self) -> datetime:
        """The current workflow time, an aware UTC datetime."""
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=timezone.utc)

    def now_ms(self) -> int:
        """The current workflow time in epoch milliseconds (the unit Perdure stores)."""
        return _real_ms() + self._offset_ms

    def advance(
        self,
        delta: timedelta | float | None = None,
        /,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        milliseconds: float = 0,
    ) -> datetime:
        """Move workflow time forward, and wake every wait it governs; the new time.

        ``delta`` (a `timedelta`, or seconds) and the keyword amounts add up:
        ``clock.advance(hours=25)``, ``clock.advance(timedelta(days=30))``.

        Raises:
            ValueError: The total is negative: workflow time never goes back.
        """
        total = timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=milliseconds
        )
        if isinstance(delta, timedelta):
            total += delta
        elif delta is not None:
            total += timedelta(seconds=delta)
        step_ms = round(total.total_seconds() * 1000)
        if step_ms < 0:
            raise ValueError(
                f"VirtualClock.advance({total}) would move workflow time back; it only moves "
                "forward (durable wake-up times and deadlines are already recorded)."
            )
        with self._changed:
            self._offset_ms += step_ms
            self._changed.notify_all()
        self._wake_all()
        return self.now()

    def advance_to(self, when: datetime) -> datetime:
        """Move workflow time forward to ``when`` (an aware datetime); the new time.

        Raises:
            ValueError: ``when`` is naive, or earlier than the clock's time now.
        """
        step_ms = _epoch_ms(when, ceil=True) - self.now_ms()
        if step_ms < 0:
            raise ValueError(
                f"VirtualClock.advance_to({when.isoformat()}) is before the clock's time now "
                f"({self.now().isoformat()}); workflow time only moves forward."
            )
        return self.advance(milliseconds=step_ms)

    # -- looking at waits --------------------------------------------------------------------

    def timers(self) -> list[Timer]:
        """The waits on workflow time in progress now, soonest first (loops last)."""
        with self._lock:
            watches = list(self._watches.values())
        timers = [Timer(w.workflow_id, _datetime(w.due_ms)) for w in watches]
        far = datetime.max.replace(tzinfo=timezone.utc)
        return sorted(timers, key=lambda t: t.due or far)

    def wait_for_timer(self, workflow_id: str | None = None, *, timeout: float = 10.0) -> datetime:
        """Block until a workflow (``workflow_id``, or any) waits for a time still ahead.

        Advance the clock after this returns, and the wait it found wakes: without it, a
        test could advance the clock before the workflow reached its ``DBOS.sleep`` (or
        ``recv``), which would then start counting from the new time. ``timeout`` is real
        seconds.

        Returns:
            When that wait ends by itself (workflow time).

        Raises:
            TimeoutError: No such wait began within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                due = self._pending_due(workflow_id)
                if due is not None:
                    return datetime.fromtimestamp(due / 1000, tz=timezone.utc)
                left = deadline - time.monotonic()
                if left <= 0:
                    who = f"workflow {workflow_id!r}" if workflow_id else "any workflow"
                    raise TimeoutError(
                        f"No wait on workflow time by {who} began within {timeout}s (waits now: "
                        f"{self._describe()}). Is the workflow running, and does it reach a "
                        "DBOS.sleep, recv, get_event or stream read with a timeout?"
                    )
                self._changed.wait(min(left, 0.5))  # time itself moves: look again

    def _pending_due(self, workflow_id: str | None) -> int | None:
        """The soonest due time, still ahead, of a wait by ``workflow_id`` (any workflow if
        None); the lock is held."""
        now = self.now_ms()
        dues = [
            w.due_ms
            for w in self._watches.values()
            if w.due_ms is not None
            and w.due_ms > now
            and w.workflow_id is not None
            and (workflow_id is None or w.workflow_id == workflow_id)
        ]
        return min(dues, default=None)

    def _describe(self) -> str:
        """The waits now, for an error message; the lock is held."""
        parts = [
            f"{w.workflow_id or 'loop'} until {_datetime(w.due_ms) or 'woken'}"
            for w in self._watches.values()
        ]
        return ", ".join(parts) or "none"

    def _wake_all(self) -> None:
        """Wake every wait registered (each distinct wake once), outside the lock: a wake
        takes its own waiters' lock."""
        with self._lock:
            wakes = list(dict.fromkeys(w.wake for w in self._watches.values()))
        for wake in wakes:
            wake()


def _real_ms() -> int:
    return time.time_ns() // 1_000_000


def _epoch_ms(when: datetime, *, ceil: bool = False) -> int:
    """``when`` in epoch milliseconds (rounded up with ``ceil``: not before ``when``)."""
    if when.tzinfo is None:
        raise ValueError(
            f"VirtualClock needs an aware datetime (with a timezone), got {when!r}: "
            "e.g. datetime(2030, 1, 1, tzinfo=timezone.utc)."
        )
    exact = when.timestamp() * 1000
    return math.ceil(exact) if ceil else round(exact)


def _datetime(epoch_ms: int | None) -> datetime | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)


def _wake_launched_app() -> None:
    """Make the launched app's loops look at the time again (they register their waits with
    the clock as they do)."""
    runtime = DBOS._runtime  # the facade's pointer to the current instance
    if runtime is None:
        return
    try:
        notifier = runtime.engine.notifier
    except DBOSInitializationError:
        return  # configured, not launched: nothing waits yet
    notifier.signal_all()
