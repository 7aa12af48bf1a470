"""Finding dead processes and taking over their PENDING workflows; sweeping this process's own.

A process is dead when:

- its lock is free (a crash: the server or the kernel released it), on two probes at least
  `LOCK_CONFIRM_SEC` apart, so a process reconnecting its heartbeat is not taken for dead,
  and only once this process's own heartbeat has held for `LOCK_TRUST_SEC` (after an outage
  every process reconnects); at launch one probe suffices: the previous run of this process
  is the usual owner;
- or its heartbeat has been silent for ``dead_executor_timeout_sec`` (a hung process, or a
  host cut off from the database), judged only once this process has itself been beating
  for that long (after an outage every process was silent for a while);
- or it owns PENDING workflows without a heartbeat row at all.

Its workflows go to the first live process that claims them (a compare-and-set under a new
owner token: each goes to one claimant, and the dead one, should it come back, is fenced off).
The sweep resumes this process's own PENDING workflows that no execution here runs (one that
stopped without an outcome): seen on two sweeps in a row, under the same token.

All of it runs on its own thread: the heartbeat never waits for a takeover.
"""

from __future__ import annotations

import threading
import time

from perdure.execution.heartbeat import Heartbeat
from perdure.execution.recovery import CLAIM_BATCH, reclaim, runnable, take_over
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.records import ExecutorRecord, WorkflowQuery, WorkflowStatusString

logger = get_logger(__name__)

STOP_TIMEOUT_SEC = 5.0
# How often locks are probed: a crash is seen within about this plus `LOCK_CONFIRM_SEC`.
PROBE_INTERVAL_SEC = 0.5
LOCK_CONFIRM_SEC = 1.0
# Locks are judged only once this process's own heartbeat has held for this long: after an
# outage every process reconnects, and must have time to take its lock again.
LOCK_TRUST_SEC = 1.0
# How often this process looks for its own orphaned workflows, and for owners without a row.
SWEEP_INTERVAL_SEC = 5.0
# A dead process whose remaining workflows this process cannot run is looked at again after.
PASS_OVER_SEC = 30.0


class Takeover:
    """Detects dead processes, takes over their workflows, and sweeps this process's own."""

    def __init__(
        self,
        engine: WorkflowEngine,
        heartbeat: Heartbeat,
        *,
        dead_after_sec: float,
        sweep_interval_sec: float | None = None,
    ) -> None:
        self._engine = engine
        self._heartbeat = heartbeat
        self._dead_after_sec = dead_after_sec
        self._sweep_interval_sec = (
            SWEEP_INTERVAL_SEC if sweep_interval_sec is None else sweep_interval_sec
        )
        self._suspects: dict[str, float] = {}  # instance -> when its lock was first seen free
        self._passed_over: dict[str, float] = {}  # instance -> when to look at it again
        self._reported: set[str] = set()  # workflows logged as not recoverable here
        self._orphans: dict[str, int] = {}  # this process's workflows no execution runs
        self._last_sweep = 0.0
        self._stop = threading.Event()
        self.first_pass_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perdure-takeover", daemon=True)

    def start(self) -> None:
        """Start watching; the first pass (recovery at launch) runs at once."""
        self._thread.start()

    def stop(self, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """Stop watching (workflows already taken over keep running); wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_sec)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self.run_pass(first=first)
            except Exception:
                logger.exception("Takeover pass failed; retried at the next one")
            if first:
                first = False
                self.first_pass_done.set()
            self._stop.wait(PROBE_INTERVAL_SEC)

    def run_pass(self, *, first: bool = False) -> None:
        """Take over the workflows of processes found dead; sweep now and then."""
        store, engine = self._engine.store, self._engine
        now = time.monotonic()
        sweep = first or now - self._last_sweep >= self._sweep_interval_sec
        others = [r for r in store.list_executors() if r.instance_id != engine.instance_id]
        dead = self._dead_by_lock(others, first=first) | self._dead_by_silence(others)
        if sweep:
            known = {r.instance_id for r in others} | {engine.instance_id}
            dead |= {i for i in store.owners_without_heartbeat() if i not in known}
        by_id = {r.instance_id: r for r in others}
        for instance in sorted(dead):
            if self._stop.is_set():
                return
            if self._passed_over.get(instance, 0.0) > now:
                continue
            self._take_over(instance, by_id.get(instance))
        if sweep:
            self._last_sweep = now
            self._sweep()

    def _dead_by_lock(self, others: list[ExecutorRecord], *, first: bool) -> set[str]:
        keyed = {r.lock_key: r.instance_id for r in others if r.lock_key is not None}
        settled = first or self._heartbeat.beating_for() >= LOCK_TRUST_SEC
        if not keyed or not self._heartbeat.lock_held or not settled:
            return set()  # a probe means something only while our own lock holds
        free = {keyed[k] for k in self._engine.store.free_lock_keys(tuple(keyed))}
        now = time.monotonic()
        for instance in list(self._suspects):
            if instance not in free:
                del self._suspects[instance]  # alive after all (it was reconnecting)
        for instance in free:
            self._suspects.setdefault(instance, now)
        if first:
            return free
        return {i for i, seen in self._suspects.items() if now - seen >= LOCK_CONFIRM_SEC}

    def _dead_by_silence(self, others: list[ExecutorRecord]) -> set[str]:
        if self._heartbeat.beating_for() < self._dead_after_sec:
            return set()  # after an outage every process was silent: let them beat again
        silent_ms = round(self._dead_after_sec * 1000)
        return {r.instance_id for r in others if r.silent_ms > silent_ms}

    def _take_over(self, instance: str, record: ExecutorRecord | None) -> None:
        engine = self._engine
        restarted: list[str] = []
        # As many as this process has room for (at least one a pass): other live processes
        # take the rest, so one busy process does not queue a dead one's whole load.
        room = max(1, engine.pool.available())
        while not self._stop.is_set() and len(restarted) < room:
            batch = take_over(engine, (instance,), limit=min(CLAIM_BATCH, room - len(restarted)))
            restarted += batch
            if not batch:
                break
        if restarted:
            executor = record.executor_id if record is not None else "?"
            logger.warning(
                "Took over %d PENDING workflow(s) of process %s (executor %r), found dead",
                len(restarted),
                instance,
                executor,
            )
        if len(restarted) >= room:
            return  # more next pass
        left = self._left_behind(instance, record)
        if left:
            self._passed_over[instance] = time.monotonic() + PASS_OVER_SEC
        else:
            self._suspects.pop(instance, None)
            self._passed_over.pop(instance, None)
            engine.store.forget_instance(instance, silent_for_ms=0)

    def _left_behind(self, instance: str, record: ExecutorRecord | None) -> bool:
        """Whether the dead process still owns PENDING workflows (that this one cannot run).

        Those of this process's own executor are reported once: the usual cause is a
        workflow function renamed or moved between runs.
        """
        query = WorkflowQuery(
            statuses=(WorkflowStatusString.PENDING,),
            owners=(instance,),
            with_inputs=False,
            with_outputs=False,
            limit=CLAIM_BATCH,
        )
        rows = self._engine.store.list_workflows(query)
        if record is not None and record.executor_id == self._engine.executor_id:
            for row in rows:
                if row.workflow_id not in self._reported:
                    self._reported.add(row.workflow_id)
                    runnable(self._engine, row)  # logs why it cannot run here
        return bool(rows)

    def _sweep(self) -> None:
        """Resume this process's PENDING workflows that no execution here runs."""
        engine = self._engine
        query = WorkflowQuery(
            statuses=(WorkflowStatusString.PENDING,),
            owners=(engine.instance_id,),
            with_inputs=False,
            with_outputs=False,
        )
        rows = engine.store.list_workflows(query)
        active = engine.active_tokens()
        orphans = {
            r.workflow_id: r.owner_token for r in rows if active.get(r.workflow_id) != r.owner_token
        }
        for workflow_id, token in orphans.items():
            if self._orphans.get(workflow_id) != token:
                continue  # seen once: it may be between its claim and its start here
            row = engine.store.get_workflow(workflow_id)
            if row is None or row.owner_token != token or row.workflow_id in self._reported:
                continue
            if runnable(engine, row) is None:
                self._reported.add(workflow_id)  # logged; kept PENDING for a fixed build
                continue
            logger.warning("Workflow %s is PENDING here but not running: resuming it", workflow_id)
            reclaim(engine, workflow_id, token)
        self._orphans = {w: t for w, t in orphans.items() if self._orphans.get(w) != t}
