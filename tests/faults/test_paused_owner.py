"""A process paused (SIGSTOP) past the dead timeout is taken over; continued, it records nothing.

The owner holds four workflows inside their second step (the gate). It is paused: alive, its
connections and lock held, but silent. Another process sees its heartbeat stop and takes the
workflows over; their gate step runs again there (the step in flight may run twice), and the
rest runs there only. Continued, the paused process finishes its gate step, finds at its
checkpoint that the workflows are no longer its own, and stops: no later step runs in it, and
nothing it writes is recorded.
"""

from __future__ import annotations

import time

import pytest

from tests.crash.harness import Programs, Witness, wait_until
from tests.faults.owners import (
    POSITIONS,
    WORKFLOWS,
    assert_ran_once_but_the_step_in_flight,
    start_owner_and_taker,
    taken_over,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("run", [1, 2])
def test_a_paused_owner_is_taken_over_and_records_nothing_after(
    witness: Witness, programs: Programs, run: int
) -> None:
    owner, taker = start_owner_and_taker(programs, witness)
    owner.pause()
    paused = time.monotonic()
    try:
        wait_until(lambda: taken_over(witness), what="the takeover", timeout=30, watch=[taker])
        took = time.monotonic() - paused
        witness.milestones.raise_flag("release")
        wait_until(
            lambda: {w.status for w in witness.workflows().values()} == {"SUCCESS"},
            what="the taker to finish every workflow",
            watch=[taker],
        )
    finally:
        owner.resume()
    # Continued, the owner's callers get the outcome the taker recorded.
    wait_until(witness.outcomes, what="the owner's outcome", watch=[owner])
    witness.milestones.record("stop")
    owner.expect_exit(0)
    taker.expect_exit(0)
    print(f"run {run}: paused owner taken over {took:.1f}s after the pause (timeout 3s)")
    assert witness.outcomes() == [
        {"by": "owner", "output": [sum(POSITIONS)] * WORKFLOWS, "error": None}
    ]
    assert_ran_once_but_the_step_in_flight(witness, owner.process.pid)
    assert "no longer" not in taker.output()  # the taker was never fenced off itself
