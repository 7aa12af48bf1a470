"""Processes sharing an executor ID never take each other's running work.

The default executor ID is "local", and deployments often pin one ID per service: a rolling
deploy starts the new process while the old one still runs, and replicas share the same
config. A launch recovers only the workflows of processes that are gone.
"""

from __future__ import annotations

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKFLOWS = 20
STEPS = 5
POSITIONS = range(1, STEPS + 1)  # the positions of the fleet's steps


@pytest.mark.parametrize("run", [1, 2])
def test_a_rolling_deploy_under_load_runs_nothing_twice(
    witness: Witness, programs: Programs, run: int
) -> None:
    load = ("--start", str(WORKFLOWS), "--steps", str(STEPS), "--step-ms", "40")
    old = programs.start("fleet", *witness.argv, "old", *load)  # executor "local"
    wait_until(
        lambda: any(name.startswith("old-") for name in witness.effects.counts()),
        what="the old process to be running its workflows",
        watch=[old],
    )
    new = programs.start("fleet", *witness.argv, "new", *load)  # executor "local" too
    wait_until(
        lambda: len(witness.outcomes()) == 2,
        what="both processes' results",
        watch=[old, new],
        timeout=60,
    )
    witness.milestones.record("stop")
    old.expect_exit(0)
    new.expect_exit(0)

    expected = sum(POSITIONS)
    outcomes = sorted(witness.outcomes(), key=lambda o: str(o["by"]))
    assert outcomes == [
        {"by": "new", "output": [expected] * WORKFLOWS, "error": None},
        {"by": "old", "output": [expected] * WORKFLOWS, "error": None},
    ]
    runs = witness.effects.by_pid()
    for name in ("old", "new"):
        pid = (old if name == "old" else new).process.pid
        for index in range(WORKFLOWS):
            for position in POSITIONS:
                # Once, and in the process that started it: nobody took it over.
                assert runs[f"{name}-{index}:{position}"] == [pid], (name, index, position)
    workflows = witness.workflows()
    assert {(i.status, i.recovery_attempts) for i in workflows.values()} == {("SUCCESS", 1)}
