"""PostgreSQL down for longer than any retry window: every workflow finishes when it returns.

Two processes hold workflows inside their gate: one in a step, the other in an open
``@DBOS.transaction``. The server is stopped for 90 seconds while the gates open, so every
checkpoint, every transaction's commit, every heartbeat and every waiter's read fails for that
long. No process is restarted. When the server is back, every workflow finishes (the
transaction committed once, its connection error never recorded as its outcome), every
``get_result()`` caller returns, and neither process takes the other's work over.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.crash.harness import Programs, Witness, wait_until
from tests.faults.server import embedded_server, server_stopped

pytestmark = [
    pytest.mark.slow,
    pytest.mark.single_backend(
        "postgres", reason="SQLite is an embedded file: there is no server to take down"
    ),
    pytest.mark.skipif(
        bool(os.environ.get("PERDURE_TEST_DATABASE_URL")),
        reason="stopping PostgreSQL needs the embedded test server; PERDURE_TEST_DATABASE_URL "
        "points at a server this test does not control",
    ),
    pytest.mark.timeout(400),
]

OUTAGE_SEC = 90.0
PER_PROCESS = 5
STEPS = 4
POSITIONS = range(1, STEPS + 1)  # the positions of the fleet's steps
GATE = 2  # the second step


def test_workflows_survive_an_outage_longer_than_any_retry_window(
    postgres_url: str, programs: Programs, tmp_path: Path
) -> None:
    server = embedded_server(postgres_url)
    witness = Witness.create(postgres_url, tmp_path)
    common = ("--start", str(PER_PROCESS), "--steps", str(STEPS), "--gate", str(GATE))
    in_step = programs.start("fleet", *witness.argv, "in-step", *common)
    in_transaction = programs.start(
        "fleet", *witness.argv, "in-tx", *common, "--gate-in-transaction"
    )
    everyone = [in_step, in_transaction]
    wait_until(
        lambda: witness.milestones.count("gate") >= 2 * PER_PROCESS,
        what="every workflow to be inside its gate",
        watch=everyone,
    )
    with server_stopped(server):
        witness.milestones.raise_flag("release")  # the gates open while the server is down
        # The outage itself: there is nothing to wait for, it just lasts this long.
        time.sleep(OUTAGE_SEC)
        assert all(p.running() for p in everyone)
    restarted = time.monotonic()
    wait_until(
        lambda: len(witness.outcomes()) == 2,
        what="both processes' get_result() callers to return",
        watch=everyone,
        timeout=120,
    )
    finished_after = time.monotonic() - restarted
    witness.milestones.record("stop")
    for program in everyone:
        program.expect_exit(0)

    print(f"all workflows finished {finished_after:.1f}s after a {OUTAGE_SEC:.0f}s outage")
    outcomes = sorted(witness.outcomes(), key=lambda o: str(o["by"]))
    expected = sum(POSITIONS)
    assert outcomes == [
        {"by": "in-step", "output": [expected] * PER_PROCESS, "error": None},
        {"by": "in-tx", "output": [expected] * PER_PROCESS, "error": None},
    ]
    workflows = witness.workflows()
    assert len(workflows) == 2 * PER_PROCESS
    for workflow_id, info in workflows.items():
        # Finished where it started: no process took another's work over after the outage.
        assert (info.status, info.recovery_attempts) == ("SUCCESS", 1), (workflow_id, info)
    runs = witness.effects.counts()
    for name in ("in-step", "in-tx"):
        for index in range(PER_PROCESS):
            for position in POSITIONS:
                ran = runs[f"{name}-{index}:{position}"]
                if name == "in-tx" and position == GATE:
                    assert ran >= 2, (name, index)  # its commit failed; it ran again
                else:
                    assert ran == 1, (name, index, position)
    # The transaction committed exactly once per workflow, whatever its attempts.
    ledger = witness.db.execute("SELECT workflow_id, COUNT(*) FROM fleet_ledger GROUP BY 1")
    assert dict(ledger) == {f"in-tx-{i}": 1 for i in range(PER_PROCESS)}
