"""The dequeue loop: one thread per process claims ready queued workflows and runs them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial

from perdure import clock
from perdure.clock import now_ms
from perdure.execution.notifier import channel
from perdure.execution.recovery import runnable
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.queues.limits import admissible, idle_wait_sec, rate_limits_free_at
from perdure.queues.queue import (
    INTERNAL_QUEUE_NAME,
    REPLACE_EXISTING,
    Declaration,
    QueueDirectory,
    QueueSpec,
)
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
# The stored definitions are read again at least this often (when the loop wakes), and at
# once when a definition changes (this process's own changes, or PostgreSQL's notification).
DEFINITIONS_REFRESH_SEC = 1.0


def queue_channel(queue_name: str) -> str:
    """The wake-up channel of a queue (matches the PostgreSQL trigger's payload)."""
    return channel("queue", queue_name)


# The channel of "a queue definition was stored, changed or deleted" (no queue has this name).
DEFINITIONS_CHANNEL = queue_channel("")


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

    It serves every queue stored in the system database (those `DBOS.listen_queues` names,
    if it was called), whichever process or client stored it, and applies the limits stored
    for each, read at every claim: a change of settings anywhere applies at the next claim,
    and every process applies the same ones whatever its own code says. At launch it stores
    the queues this process declares. Claimed workflows are PENDING and owned by this
    process, so if it dies another process takes them over like any other; until then they
    count against the queue's limits. Only workflows this process can run are claimed (a
    registered name, and its application version), no more than the worker pool has room
    for. It also serves the internal queue, where clients hand over the workflows they
    resume or fork, polled every ``internal_polling_sec`` (other processes' writes wake it
    on PostgreSQL at once).
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
        self._lock = threading.Lock()
        self._stored: dict[str, QueueSpec] = {}  # the stored definitions, as last read
        self._read_at = float("-inf")  # when they were (time.monotonic())
        self._changes = 0  # definitions written here: a read overlapping one is read again
        self._definitions_seen: tuple[int, ...] = ()
        self._unstored_listened: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Store every queue declared so far (clients and the CLI read them), then start."""
        for declaration in self._directory.declarations():
            self.adopt(declaration)
        self._definitions_seen = self._notifier.mark((DEFINITIONS_CHANNEL,))
        self._read_definitions()
        served = [spec.name for spec in self._known_served()[:-1]]
        logger.info("Serving %d queue(s): %s", len(served), ", ".join(served) or "none")
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop claiming (workflows already claimed keep running); wait for the thread."""
        self._stop.set()
        self._notifier.signal_all()
        if self._thread.is_alive():
            self._thread.join(timeout_sec)

    # -- definitions -----------------------------------------------------------------------------

    def adopt(self, declaration: Declaration) -> QueueSpec:
        """Store a queue this process declares, as its ``on_conflict`` says; return the
        definition stored now (another process's, if it was kept)."""
        spec = declaration.spec
        stored = QueueSpec.from_record(
            self._store.save_queue(
                spec.record(),
                replace_existing=REPLACE_EXISTING[declaration.on_conflict],
                app_version=self._engine.app_version,
            )
        )
        if stored != spec:
            logger.info(
                "Queue %r keeps the settings stored for it (%s) rather than this process's "
                "(%s): on_conflict=%r, application version %r.",
                spec.name, stored, spec, declaration.on_conflict, self._engine.app_version,
            )  # fmt: skip
        self.note(stored)
        return stored

    def note(self, spec: QueueSpec) -> None:
        """A definition this process stored or read: serve it by these settings from now."""
        with self._lock:
            changed = self._stored.get(spec.name) != spec
            self._stored[spec.name] = spec
            self._changes += changed
        if changed:
            self._notifier.signal(DEFINITIONS_CHANNEL)

    def forget(self, name: str) -> None:
        """A definition this process deleted: stop serving the queue."""
        with self._lock:
            self._stored.pop(name, None)
            self._changes += 1
        self._notifier.signal(DEFINITIONS_CHANNEL)

    def known(self, name: str) -> QueueSpec | None:
        """The stored definition of ``name`` as last read or written here, or None."""
        with self._lock:
            return self._stored.get(name)

    def _read_definitions(self) -> None:
        with self._lock:
            changes = self._changes
        stored = {r.name: QueueSpec.from_record(r) for r in self._store.list_queues()}
        with self._lock:
            if self._changes != changes:  # a write here overlapped the read: keep the cache
                return  # as that write left it, and read again at the next pass
            self._stored = stored
        self._read_at = time.monotonic()
        for name in self._directory.listened or ():
            if name not in stored and name not in self._unstored_listened:
                self._unstored_listened.add(name)
                logger.warning(
                    "DBOS.listen_queues names queue %r, which is not stored in the system "
                    "database: nothing is served from it until a process or client "
                    "registers it (Queue(...), DBOS.register_queue, DBOSClient.register_queue).",
                    name,
                )

    def _served(self) -> list[QueueSpec]:
        """The queues the loop claims from now, by name, and the internal queue last."""
        seen = self._notifier.mark((DEFINITIONS_CHANNEL,))
        if seen != self._definitions_seen or time.monotonic() - self._read_at >= (
            DEFINITIONS_REFRESH_SEC
        ):
            self._definitions_seen = seen  # before reading: a change meanwhile reads again
            self._read_definitions()
        return self._known_served()

    def _known_served(self) -> list[QueueSpec]:
        with self._lock:
            specs = sorted(self._stored.values(), key=lambda spec: spec.name)
        return [s for s in specs if self._directory.serves(s.name)] + [self._internal]

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        idle_passes = 0
        while not self._stop.is_set():
            # Delays and rate limits follow workflow time: a test moving it wakes the loop.
            with clock.watching(self._notifier.signal_all):
                idle_passes = self._pass_and_wait(idle_passes)

    def _pass_and_wait(self, idle_passes: int) -> int:
        """One pass, then the wait until the next is due; the idle passes so far."""
        try:
            served = self._served()
        except Exception:
            logger.exception("Reading the queue definitions failed; serving the known ones")
            served = self._known_served()
        names = (DEFINITIONS_CHANNEL, *(queue_channel(spec.name) for spec in served))
        seen = self._notifier.mark(names)  # before the pass: no signal is lost
        try:
            done = self._pass(served)
        except Exception:
            logger.exception("Dequeue pass failed; retrying after the polling interval")
            done = _Pass()
        if done.more_ready and not self._stop.is_set():
            return idle_passes
        idle_passes = 0 if done.started else idle_passes + 1
        polling = min((spec.polling_interval_sec for spec in served), default=1.0)
        wait = idle_wait_sec(polling, idle_passes)
        if done.wake_at_ms is not None:
            wait = min(wait, max(0.0, (done.wake_at_ms - now_ms()) / 1000))
        self._notifier.wait_changed(names, seen, wait)
        return idle_passes

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
                frees_at = rate_limits_free_at(limits, occupancy)
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
            stored_only=spec is not self._internal,  # a deleted queue yields nothing at once
            clock_offset_ms=clock.offset_ms(),
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
