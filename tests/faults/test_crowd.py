"""Waiting workflows never starve running ones, nor the heartbeat, nor a parent's children.

One process (64 worker threads, fast heartbeats) starts 300 workflows that each run a step and
then wait in ``recv``, and a parent fanning out to 100 children it waits for. Every waiter
reaches its first step; the fan-out finishes; a message to the last waiter completes it at
once; and another process, watching with a 3-second dead timeout, never takes anything over.
"""

from __future__ import annotations

import time

import pytest

from perdure import DBOSClient
from tests.crash.harness import Programs, Witness, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WAITERS = 300
CHILDREN = 100


def test_300_waiters_and_a_wide_fan_out_on_64_threads(witness: Witness, programs: Programs) -> None:
    observer = programs.start(
        "fleet", *witness.argv, "observer", "--executor-id", "observer",
        "--heartbeat", "0.5", "--dead-after", "3",
    )  # fmt: skip
    wait_until(
        lambda: witness.milestones.count("ready") >= 1, what="the observer", watch=[observer]
    )
    started = time.monotonic()
    crowd = programs.start("crowd", *witness.argv, str(WAITERS), str(CHILDREN))

    def reached_first() -> int:
        return sum(1 for name in witness.effects.counts() if name.startswith("first:"))

    wait_until(
        lambda: reached_first() == WAITERS,
        what="every waiter to reach its first step",
        watch=[crowd, observer],
        timeout=120,
    )
    all_started = time.monotonic() - started
    wait_until(
        lambda: witness.milestones.details("fanned-out") == [str(sum(range(CHILDREN)))],
        what="the fan-out past the pool to finish",
        watch=[crowd, observer],
        timeout=120,
    )
    client = DBOSClient(witness.db.url)
    try:
        sent = time.monotonic()
        client.send(f"waiter-{WAITERS - 1}", "approved", "approve")
        assert client.retrieve_workflow(f"waiter-{WAITERS - 1}").get_result() == "approved"
        last_done = time.monotonic() - sent
        for index in range(WAITERS - 1):
            client.send(f"waiter-{index}", "approved", "approve")
        wait_until(witness.outcomes, what="every waiter's result", watch=[crowd], timeout=120)
    finally:
        client.destroy()
    witness.milestones.record("stop")
    crowd.expect_exit(0)
    observer.expect_exit(0)

    print(
        f"{WAITERS} waiters at their first step after {all_started:.1f}s; the last one "
        f"finished {last_done * 1000:.0f}ms after its message"
    )
    assert last_done < 10.0  # at once, not after a poll of a starved pool or a timeout
    assert witness.outcomes() == [{"by": "crowd", "output": ["approved"] * WAITERS, "error": None}]
    counts = witness.effects.counts()
    assert all(counts[f"first:{i}"] == 1 and counts[f"after:{i}"] == 1 for i in range(WAITERS))
    assert all(counts[f"child:{i}"] == 1 for i in range(CHILDREN))
    workflows = witness.workflows()
    assert len(workflows) == WAITERS + CHILDREN + 1
    # No false takeover: the crowd's heartbeat never starved behind its waiting workflows.
    assert {info.recovery_attempts for info in workflows.values()} == {1}
    assert {info.executor_id for info in workflows.values()} == {"crowd"}
