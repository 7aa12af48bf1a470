"""A SIGKILLed process's workflows resume elsewhere within seconds, with the default config.

The victim runs under an executor ID nobody will ever launch again (a pod replaced, a host
gone), so only another live process can finish its work. Its lock (a PostgreSQL session lock,
a byte of a file beside a SQLite database) is released by the server or the kernel the moment
it dies: the default 60-second heartbeat timeout plays no part. The time from the kill to the
taker running the interrupted step is measured (and printed with ``-s``).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKFLOWS = 3
STEPS = 3
POSITIONS = range(1, STEPS + 1)  # the positions of the fleet's steps
GATE = 2  # the second step
# Generous for a loaded CI machine; the figure itself is what the closing notes report.
MAX_RECOVERY_SEC = 10.0


@pytest.mark.parametrize("run", [1, 2, 3])
def test_a_killed_process_under_a_fresh_executor_id_is_resumed_elsewhere(
    witness: Witness, programs: Programs, run: int
) -> None:
    taker = programs.start("fleet", *witness.argv, "taker", "--executor-id", "taker")
    wait_until(lambda: witness.milestones.count("ready") == 1, what="the taker", watch=[taker])
    victim = programs.start(
        "fleet", *witness.argv, "victim", "--executor-id", f"pod-{uuid.uuid4().hex[:8]}",
        "--start", str(WORKFLOWS), "--steps", str(STEPS), "--gate", str(GATE),
    )  # fmt: skip
    wait_until(
        lambda: witness.milestones.count("gate") == WORKFLOWS,
        what="every workflow inside its gate step",
        watch=[victim, taker],
    )
    killed_ms = time.time_ns() // 1_000_000
    victim.kill()

    def resumed_at() -> list[int]:
        """When the taker ran each workflow's interrupted step (epoch ms), once all it has."""
        runs = [
            [at for pid, at in witness.effects.rows(f"victim-{i}:{GATE}") if pid != victim_pid]
            for i in range(WORKFLOWS)
        ]
        return [min(r) for r in runs] if all(runs) else []

    victim_pid = victim.process.pid
    resumed = wait_until(resumed_at, what="the taker to resume every workflow", timeout=30,
                         watch=[taker])  # fmt: skip
    recovery = (max(resumed) - killed_ms) / 1000
    wait_until(
        lambda: {w.status for w in witness.workflows().values()} == {"SUCCESS"},
        what="the taker to finish them",
        watch=[taker],
    )
    witness.milestones.record("stop")
    taker.expect_exit(0)

    print(f"run {run}: all {WORKFLOWS} workflows resumed {recovery:.2f}s after the kill")
    assert recovery < MAX_RECOVERY_SEC
    counts = witness.effects.counts()
    for index in range(WORKFLOWS):
        ran = [counts[f"victim-{index}:{p}"] for p in POSITIONS]
        assert ran == [1, 2, 1], (index, ran)  # only the step in flight ran twice
    assert {w.executor_id for w in witness.workflows().values()} == {"taker"}
