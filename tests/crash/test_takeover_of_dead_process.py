"""A live process takes over the workflow of another executor's process killed mid-step."""

from __future__ import annotations

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKFLOW_ID = "orphaned-wf"


def test_a_live_process_takes_over_a_killed_ones_workflow(
    witness: Witness, programs: Programs
) -> None:
    taker = programs.start("taker", *witness.argv, WORKFLOW_ID)
    wait_until(lambda: witness.milestones.count("taker-ready") == 1, what="the taker",
               watch=[taker])  # fmt: skip
    victim = programs.start("four_steps", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: witness.milestones.count("step3-started") >= 1,
        what="step 3 to start",
        watch=[victim, taker],
    )
    victim.kill()  # its executor ("local") never comes back

    taker.expect_exit(0)  # it saw the workflow end, and it was the one that ran it
    assert witness.outcomes() == [{"by": "", "output": [101, 103, 106, 110], "error": None}]
    assert witness.effects.counts() == {"step1": 1, "step2": 1, "step3": 2, "step4": 1}
    assert witness.steps(WORKFLOW_ID) == [(1, "step1"), (2, "step2"), (3, "step3"), (4, "step4")]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.executor_id, info.recovery_attempts) == ("SUCCESS", "taker", 2)
