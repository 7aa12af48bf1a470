"""What the takeover fault tests share: an owner and a taker of the same workflows, and checks.

The owner (executor "a") starts the workflows and holds each inside its gate step; the taker
(executor "b") only serves. A fault then silences the owner; the checks assert from effects
that the taker finished everything and the owner ran nothing more.
"""

from __future__ import annotations

from tests.crash.harness import Program, Programs, Witness, wait_until

WORKFLOWS = 4
STEPS = 4
POSITIONS = range(1, STEPS + 1)  # the positions of the fleet's steps
GATE = 2  # the second step
TIMEOUTS = ("--heartbeat", "0.5", "--dead-after", "3")


def start_owner_and_taker(
    programs: Programs, witness: Witness, *, url: str | None = None
) -> tuple[Program, Program]:
    """The taker (serving only) and the owner (starting the workflows, on ``url`` if given:
    a proxy), once every workflow is inside its gate step."""
    argv = (url or witness.db.url, witness.milestones.path)
    taker = programs.start("fleet", *witness.argv, "taker", "--executor-id", "b", *TIMEOUTS)
    owner = programs.start(
        "fleet", *argv, "owner", "--executor-id", "a", *TIMEOUTS,
        "--start", str(WORKFLOWS), "--steps", str(STEPS), "--gate", str(GATE),
    )  # fmt: skip
    wait_until(
        lambda: witness.milestones.count("gate") >= WORKFLOWS,
        what="every workflow to be inside its gate step in the owner",
        watch=[owner, taker],
    )
    return owner, taker


def taken_over(witness: Witness) -> bool:
    workflows = witness.workflows()
    return len(workflows) == WORKFLOWS and all(w.executor_id == "b" for w in workflows.values())


def assert_ran_once_but_the_step_in_flight(witness: Witness, owner_pid: int) -> None:
    """Every step's effect once, the gate step's twice (owner, then taker), and nothing of a
    later step in the owner; every step from the gate on recorded under the final token."""
    runs = witness.effects.by_pid()
    for index in range(WORKFLOWS):
        workflow_id = f"owner-{index}"
        for position in POSITIONS:
            pids = runs.get(f"{workflow_id}:{position}", [])
            if position == GATE:
                assert len(pids) == 2, (workflow_id, position, pids)
                assert pids[0] == owner_pid != pids[1], (workflow_id, pids)
            else:
                assert len(pids) == 1, (workflow_id, position, pids)
            if position > GATE:
                assert owner_pid not in pids, (workflow_id, position)
        token, written_under = witness.ownership(workflow_id)
        assert {p: t for p, t in written_under.items() if p >= GATE} == dict.fromkeys(
            range(GATE, STEPS + 1), token
        ), workflow_id
        info = witness.workflows()[workflow_id]
        assert (info.status, info.recovery_attempts) == ("SUCCESS", 2), (workflow_id, info)
