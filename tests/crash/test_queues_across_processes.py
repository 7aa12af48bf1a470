"""Queues served by several processes on one database: limits hold across all of them, every
job runs once, and a SIGKILLed worker's claimed jobs complete after it restarts."""

from __future__ import annotations

import pytest

from perdure.queues.limits import most_starts_in_any_window
from tests.crash.harness import Program, Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKERS = ("exec-a", "exec-b", "exec-c")


def start_workers(witness: Witness, programs: Programs, mode: str, limits: str) -> list[Program]:
    workers = [
        programs.start("queue_worker", *witness.argv, executor_id, mode, "0", limits)
        for executor_id in WORKERS
    ]
    wait_until(
        lambda: witness.milestones.count("ready") >= len(WORKERS),
        what="every worker to launch",
        watch=workers,
    )
    return workers


def enqueue(witness: Witness, programs: Programs, count: int, limits: str) -> None:
    feeder = programs.start("queue_worker", *witness.argv, "feeder", "enqueue", str(count), limits)
    feeder.expect_exit(0)


def wait_all_done(witness: Witness, count: int, workers: list[Program]) -> None:
    def done() -> bool:
        jobs = [w for wid, w in witness.workflows().items() if wid.startswith("job-")]
        return len(jobs) == count and all(w.status == "SUCCESS" for w in jobs)

    wait_until(done, what=f"all {count} jobs to succeed", timeout=60, watch=workers)


def stop(witness: Witness, workers: list[Program]) -> None:
    witness.milestones.record("stop")
    for worker in workers:
        worker.expect_exit(0)


def max_overlap(witness: Witness, count: int) -> int:
    """The most jobs between their start and end effects at any moment (ties: end first)."""
    events = []
    for i in range(count):
        [(_, start)] = witness.effects.rows(f"start-{i}")
        [(_, end)] = witness.effects.rows(f"end-{i}")
        events += [(start, 1), (end, -1)]
    best = current = 0
    for _, delta in sorted(events):
        current += delta
        best = max(best, current)
    return best


def test_global_concurrency_holds_across_three_workers(
    witness: Witness, programs: Programs
) -> None:
    count = 60
    workers = start_workers(witness, programs, "serve", "concurrency")
    enqueue(witness, programs, count, "concurrency")
    wait_all_done(witness, count, workers)
    stop(witness, workers)

    effects = witness.effects.counts()
    assert all(effects[f"{kind}-{i}"] == 1 for kind in ("start", "end") for i in range(count))
    assert max_overlap(witness, count) <= 2
    runners = {w.executor_id for wid, w in witness.workflows().items() if wid.startswith("job-")}
    assert runners <= set(WORKERS)


def test_rate_limit_holds_across_three_workers(witness: Witness, programs: Programs) -> None:
    count = 16
    workers = start_workers(witness, programs, "serve", "rate")
    enqueue(witness, programs, count, "rate")
    wait_all_done(witness, count, workers)
    stop(witness, workers)

    assert all(witness.effects.counts()[f"end-{i}"] == 1 for i in range(count))
    rows = witness.db.execute(
        f"SELECT dequeued_at_epoch_ms FROM {witness.db.system}workflow_status "
        "WHERE queue_name = 'shared'"
    )
    starts = [int(at) for (at,) in rows]
    assert len(starts) == count
    assert most_starts_in_any_window(starts, 500) <= 4


def test_killed_worker_completes_its_claimed_jobs_after_restart(
    witness: Witness, programs: Programs
) -> None:
    count = 6
    workers = dict(
        zip(WORKERS, start_workers(witness, programs, "hold", "concurrency"), strict=True)
    )
    enqueue(witness, programs, count, "concurrency")
    wait_until(
        lambda: witness.milestones.count("running") >= 2,
        what="two jobs to be claimed and running",
        watch=list(workers.values()),
    )
    victim = witness.milestones.details("running")[0]
    claimed = sorted(
        wid
        for wid, w in witness.workflows().items()
        if w.executor_id == victim and w.status == "PENDING"
    )
    assert claimed
    workers[victim].kill()
    witness.milestones.record("release")
    # Its claimed jobs stay PENDING (counting against the queue) until it comes back.
    assert all(witness.status(wid) == "PENDING" for wid in claimed)
    workers[victim] = programs.start(
        "queue_worker", *witness.argv, victim, "hold", "0", "concurrency"
    )
    wait_all_done(witness, count, list(workers.values()))
    stop(witness, list(workers.values()))

    info = witness.workflows()
    for wid in claimed:
        assert (info[wid].executor_id, info[wid].recovery_attempts) == (victim, 2)
    assert all(witness.effects.counts()[f"end-{i}"] == 1 for i in range(count))
