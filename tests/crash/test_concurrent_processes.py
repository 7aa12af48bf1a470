"""Two processes starting one workflow ID at the same moment run its body once and agree."""

from __future__ import annotations

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKFLOW_ID = "contested-wf"
CONTENDERS = {"a": "exec-a", "b": "exec-b"}  # distinct executors: two logical executors


def test_two_processes_start_same_workflow_id(witness: Witness, programs: Programs) -> None:
    # Each process launches, then waits at a barrier (two "ready" milestones) before calling.
    contenders = [
        programs.start("contender", *witness.argv, name, executor_id, WORKFLOW_ID)
        for name, executor_id in CONTENDERS.items()
    ]
    wait_until(
        lambda: witness.milestones.count("ready") >= 2,
        what="both processes to launch",
        watch=contenders,
    )
    wait_until(
        lambda: (
            witness.milestones.count("calling") >= 2 and witness.milestones.count("in-step") >= 1
        ),
        what="both processes to call the workflow, and one of them to run its step",
        watch=contenders,
    )
    witness.milestones.record("release")
    for contender in contenders:
        contender.expect_exit(0)

    assert witness.effects.counts() == {"workflow-body": 1, "step-body": 1}
    [runner] = witness.milestones.details("in-step")
    outcomes = sorted(witness.outcomes(), key=lambda outcome: outcome["by"])
    assert outcomes == [
        {"by": name, "output": f"computed-by-{runner}", "error": None}
        for name in sorted(CONTENDERS)
    ]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.executor_id, info.recovery_attempts) == (
        "SUCCESS",
        CONTENDERS[runner],
        1,
    )
    assert witness.steps(WORKFLOW_ID) == [(1, "slow_part")]
