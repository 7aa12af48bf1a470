"""Group commit of step checkpoints: concurrent workflows share one statement and one commit.

A thread recording a step while no other write is in flight writes it at once, alone: one
round trip, exactly as without grouping. Threads that arrive while a write is in flight queue
up. When the write returns, its thread (the leader) hands the lead to the first queued thread,
which writes its own step together with everything queued by then, in one transaction, and so
on. Every step still returns only after the commit that made it durable: the guarantee is
unchanged, only the number of commits and round trips that concurrent workflows need shrinks.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

from perdure.storage.records import StepRow

# The most checkpoints one batch writes: a bounded statement, and a bounded wait for the last.
MAX_BATCH = 256
# ... and the most payload bytes: 64 workflows checkpointing 20 MB outputs must not become one
# statement the server refuses, failing all of them (one over the bound still goes, alone).
MAX_BATCH_BYTES = 16 * 1024 * 1024


class _Pending:
    """One step waiting to be written, and what became of it."""

    __slots__ = ("error", "promoted", "recorded", "step", "woken")

    def __init__(self, step: StepRow) -> None:
        self.step = step
        self.woken = threading.Event()
        self.promoted = False  # woken to lead the next write, its own step not yet written
        self.recorded = False
        self.error: BaseException | None = None


class GroupCommit:
    """Writes step checkpoints alone when uncontended and in batches when concurrent.

    Args:
        write_one: Writes one step; True if it was recorded (its workflow was PENDING and
            the position free).
        write_many: Writes several steps in one transaction; for each, whether it was recorded.
    """

    def __init__(
        self,
        write_one: Callable[[StepRow], bool],
        write_many: Callable[[Sequence[StepRow]], list[bool]],
    ) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._writing = False

    def record(self, step: StepRow) -> bool:
        """Write ``step`` durably, alone or with others; True if it was recorded.

        Raises what the write raised (every step of a failed batch raises it).
        """
        mine = _Pending(step)
        with self._lock:
            queued = self._writing
            if queued:
                self._queue.append(mine)
            else:
                self._writing = True
        if queued:
            mine.woken.wait()
            if not mine.promoted:
                return _outcome(mine)  # a leader wrote it
        with self._lock:
            batch = [mine]
            size = _size(mine.step)
            while self._queue and len(batch) < MAX_BATCH:
                size += _size(self._queue[0].step)
                if size > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.pop(0))
        try:
            self._write(batch)
        finally:
            self._pass_lead()
        return _outcome(mine)

    def queued(self) -> int:
        """How many steps wait behind the write in flight."""
        with self._lock:
            return len(self._queue)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                outcomes = [self._write_one(batch[0].step)]
            else:
                outcomes = self._write_many([pending.step for pending in batch])
        except BaseException as exc:  # noqa: BLE001 - re-raised by every waiter, the leader too
            for pending in batch:
                pending.error = exc
        else:
            for pending, recorded in zip(batch, outcomes, strict=True):
                pending.recorded = recorded
        for pending in batch[1:]:
            pending.woken.set()

    def _pass_lead(self) -> None:
        with self._lock:
            if not self._queue:
                self._writing = False
                return
            successor = self._queue.pop(0)
        successor.promoted = True
        successor.woken.set()


def _outcome(pending: _Pending) -> bool:
    if pending.error is not None:
        raise _own_copy(pending.error)
    return pending.recorded


def _size(step: StepRow) -> int:
    return len(step.output or b"") + len(step.error or b"")


def _own_copy(error: BaseException) -> BaseException:
    """The batch's error for one waiter: every thread raises an instance of its own, so their
    tracebacks do not tangle in one shared object (the batch's error is its cause)."""
    try:
        mine = copy.copy(error)
    except Exception:  # noqa: BLE001 - an error that cannot be copied is raised as it is
        return error
    if mine is not error:
        mine.__cause__ = error
    return mine
