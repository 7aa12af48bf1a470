"""The dequeue loop: one thread per process claims ready queued workflows and runs them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial

from perdure.clock import now_ms
from perdure.execution.notifier import channel
from perdure.execution.recovery import runnable
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.queues.limits import admissible, idle_wait_sec, rate_limit_frees_at
from perdure.queues.queue import INTERNAL_QUEUE_NAME, QueueDirectory, QueueSpec
from perdure.storage.records import (
    Occupancy,
    QueueClaim,
    QueueRecord,
    WorkflowRow,
    new_owner_token,
)
from perdure.storage.store import Store

logger = get_logger(__name__)

# The most workflows one claim takes from one queue: a bounded transaction, and a fair share
# for the other processes serving the queue.
CLAIM_BATCH = 100
STOP_TIMEOUT_SEC = 5.0


def queue_channel(queue_name: str) -> str:
    """The wake-up channel of a queue (matches the PostgreSQL trigger's payload)."""
    return channel("queue", queue_name)


@dataclass
class _Pass:
    """What one pass over the served queues did, and when the next one is due."""

    started: int = 0
    more_ready: bool = False  # a claim was cut by the batch bound: go again at once
    wake_at_ms: int | None = None  # a delay or the rate limiter frees work then

    def wake_no_later_than(self, at_ms: int | None) -> None:
        if at_ms is not None and (self.wake_at_ms is None or at_ms < self.wake_at_ms):
            self.wake_at_ms = at_ms


class Dequeuer:
    """Claims queued workflows within their queues' limits and runs them on the worker pool.

    Claimed workflows are PENDING and owned by this process, so if it dies another process
    takes them over like any other; until then they count against the queue's concurrency.
    The limits enforced are those stored for the queue, so every process applies the same
    ones whatever its own code says; only workflows this process can run are claimed (a
    registered name, and its application version or none). It claims no more than the
    worker pool has room for. Besides the queues of ``directory`` it always serves the
    internal queue, where clients hand over the workflows they resume or fork; it polls that
    one every ``internal_polling_sec`` (other processes' writes wake it on PostgreSQL at once).
    """

    def __init__(
        self,
        engine: WorkflowEngine,
        directory: QueueDirectory,
        store: Store,
        *,
        internal_polling_sec: float = 1.0,
    ) -> None:
        self._engine = engine
        self._internal = QueueSpec(INTERNAL_QUEUE_NAME, polling_interval_sec=internal_polling_sec)
        self._directory = directory
        self._store = store
        self._notifier = engine.notifier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perdure-dequeue", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Store every queue defined so far (clients and the CLI read them), then start."""
        for spec in self._directory.all():
            self._store.save_queue(spec.record())
        for name in self._directory.listened or ():
            if self._directory.get(name) is None:
                logger.warning(
                    "DBOS.listen_queues names queue %r, which this process does not define: "
                    "it is not served here. Define it with Queue(...) or DBOS.register_queue.",
                    name,
                )
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop claiming (workflows already claimed keep running); wait for the thread."""
        self._stop.set()
        self._notifier.signal_all()
        if self._thread.is_alive():
            self._thread.join(timeout_sec)

    def adopt(self, spec: QueueSpec) -> None:
        """A queue defined after launch: store it and serve it from the next pass."""
        self._store.save_queue(spec.record())
        self._notifier.signal_all()

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        idle_passes = 0
        while not self._stop.is_set():
            served = [*self._directory.served(), self._internal]
            names = tuple(queue_channel(spec.name) for spec in served)
            seen = self._notifier.mark(names)  # before the pass: no signal is lost
            try:
                done = self._pass(served)
            except Exception:
                logger.exception("Dequeue pass failed; retrying after the polling interval")
                done = _Pass()
            if done.more_ready and not self._stop.is_set():
                continue
            idle_passes = 0 if done.started else idle_passes + 1
            polling = min((spec.polling_interval_sec for spec in served), default=1.0)
            wait = idle_wait_sec(polling, idle_passes)
            if done.wake_at_ms is not None:
                wait = min(wait, max(0.0, (done.wake_at_ms - now_ms()) / 1000))
            self._notifier.wait_changed(names, seen, wait)

    def _pass(self, served: list[QueueSpec]) -> _Pass:
        done = _Pass()
        for spec in served:
            room = min(CLAIM_BATCH, self._engine.pool.available())
            if room <= 0 or self._stop.is_set():
                break  # the pool is busy: a finishing workflow wakes the loop
            claimed = self._claim(spec, room, done)
            for row in claimed:
                self._run_claimed(row)
            done.started += len(claimed)
            done.more_ready = done.more_ready or len(claimed) >= room
        return done

    def _claim(self, spec: QueueSpec, room: int, done: _Pass) -> list[WorkflowRow]:
        admitted: list[int] = [0]
        judged_at: list[int] = []  # the database's clock as the claim read readiness

        def admit(record: QueueRecord, occupancy: Occupancy) -> int:
            # Pure but for noting when to look again: a retried claim transaction asks anew.
            limits = QueueSpec.from_record(record).limits
            count = admissible(limits, occupancy, now_ms=occupancy.now_ms, batch=room)
            if count == 0:
                frees_at = rate_limit_frees_at(limits, occupancy.recent_starts_ms, occupancy.now_ms)
                done.wake_no_later_than(_local_time(frees_at, occupancy.now_ms))
            admitted[0] += count
            judged_at[:] = [occupancy.now_ms]
            return count

        engine = self._engine
        claim = QueueClaim(
            default=spec.record(),
            executor_id=engine.executor_id,
            instance_id=engine.instance_id,
            token=new_owner_token(),
            names=engine.registry.workflow_names(),
            app_version=engine.app_version,
            batch=room,
        )
        claimed = self._store.claim_queued(claim, admit)
        if len(claimed) < min(admitted[0], room):  # ready work ran out: is any delayed?
            # Delayed past the time the claim judged by (not the clock now: one coming due in
            # between would be neither claimed nor waited for).
            after = judged_at[0] if judged_at else now_ms()
            done.wake_no_later_than(self._store.next_ready_at(spec.name, after))
        return claimed

    def _run_claimed(self, row: WorkflowRow) -> None:
        """Run a claimed workflow in the background, exactly as recovery does."""
        engine = self._engine
        call = runnable(engine, row)
        if call is None:
            return  # logged; left PENDING here, for the sweep once the code is fixed
        active = engine.resume(row)
        if active is None:
            return  # already executing in this process
        queue_name = row.queue_name or ""
        try:
            engine.execute_in_background(active, call, on_done=partial(self._finished, queue_name))
        except RuntimeError:  # the pool stopped (shutdown): another owner resumes it
            engine.abandon(active)
            raise

    def _finished(self, queue_name: str) -> None:
        self._notifier.signal(queue_channel(queue_name))


def _local_time(database_ms: int | None, database_now_ms: int) -> int | None:
    """A time read on the database's clock, moved to this process's clock."""
    if database_ms is None:
        return None
    return now_ms() + (database_ms - database_now_ms)
