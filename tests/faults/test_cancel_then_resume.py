"""Cancel, then resume, from another process while a step runs: nothing runs twice but that step.

An operator cancels a workflow inside a long step and resumes it (a client, as the CLI and the
dashboard do). The resume gives the workflow a new owner token: the execution still inside the
step is fenced off, and a new execution replays the finished steps and runs the rest. The step
that was running when the operator acted may run twice; no finished step does, and no later
step runs in the old execution.
"""

from __future__ import annotations

import pytest

from perdure import DBOSClient
from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

STEPS = 4
POSITIONS = range(1, STEPS + 1)  # the positions of the fleet's steps
GATE = 2  # the second step


@pytest.mark.parametrize("run", [1, 2])
def test_cancel_then_resume_from_another_process_while_a_step_runs(
    witness: Witness, programs: Programs, run: int
) -> None:
    worker = programs.start(
        "fleet", *witness.argv, "worker", "--start", "1", "--steps", str(STEPS),
        "--gate", str(GATE),
    )  # fmt: skip
    wait_until(lambda: witness.milestones.count("gate") == 1, what="the gate", watch=[worker])
    client = DBOSClient(witness.db.url)
    try:
        client.cancel_workflow("worker-0")
        assert client.retrieve_workflow("worker-0").get_status().status == "CANCELLED"
        client.resume_workflow("worker-0")
        # The resumed execution replays step 1 and enters the gate step again.
        wait_until(
            lambda: witness.milestones.count("gate") == 2,
            what="the resumed execution to reach the gate step",
            watch=[worker],
        )
        witness.milestones.raise_flag("release")  # both executions leave the step now
        assert client.retrieve_workflow("worker-0").get_result() == sum(POSITIONS)
    finally:
        client.destroy()
    wait_until(witness.outcomes, what="the worker's outcome", watch=[worker])
    witness.milestones.record("stop")
    worker.expect_exit(0)

    assert witness.outcomes() == [{"by": "worker", "output": [sum(POSITIONS)], "error": None}]
    counts = witness.effects.counts()
    assert [counts[f"worker-0:{p}"] for p in POSITIONS] == [1, 2, 1, 1]
    token, written_under = witness.ownership("worker-0")
    assert {p: t for p, t in written_under.items() if p >= GATE} == dict.fromkeys(
        range(GATE, STEPS + 1), token
    )
    assert witness.status("worker-0") == "SUCCESS"
