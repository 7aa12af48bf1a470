"""A schedule run by two processes on one database: each tick runs exactly once."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

EXECUTORS = ("exec-a", "exec-b")
TICKS_WHILE_BOTH_RUN = 5


def ticks(witness: Witness) -> dict[datetime, int]:
    """How many times each tick's step ran, by scheduled time."""
    return {
        datetime.fromisoformat(name.removeprefix("tick-")): count
        for name, count in witness.effects.counts().items()
        if name.startswith("tick-")
    }


def test_each_tick_runs_once_with_two_processes(witness: Witness, programs: Programs) -> None:
    tickers = [programs.start("scheduled_ticker", *witness.argv, e) for e in EXECUTORS]
    wait_until(
        lambda: witness.milestones.count("ready") == len(EXECUTORS),
        what="both processes to launch",
        watch=tickers,
    )
    both_ready = datetime.now().astimezone()

    def enough() -> bool:
        return sum(t > both_ready for t in ticks(witness)) >= TICKS_WHILE_BOTH_RUN

    wait_until(enough, what=f"{TICKS_WHILE_BOTH_RUN} ticks", timeout=30, watch=tickers)
    witness.milestones.record("stop")
    for ticker in tickers:
        ticker.expect_exit(0)

    counts = ticks(witness)
    assert all(count == 1 for count in counts.values()), counts
    seconds = sorted(counts)
    # No tick was skipped while a process ran, and none ran twice.
    gaps = {b - a for a, b in itertools.pairwise(seconds)}
    assert gaps <= {timedelta(seconds=1)}, seconds
    assert TICKS_WHILE_BOTH_RUN <= sum(t > both_ready for t in seconds) <= TICKS_WHILE_BOTH_RUN + 3
    runs = {wid: w for wid, w in witness.workflows().items() if wid.startswith("sched-ticker-")}
    assert len(runs) == len(seconds)
    assert all(w.status == "SUCCESS" and w.executor_id in EXECUTORS for w in runs.values())
