"""Workflows in flight survive a PostgreSQL restart without restarting their process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.crash.harness import Programs, Witness, wait_until
from tests.faults.server import embedded_server, server_stopped

pytestmark = [
    pytest.mark.slow,
    pytest.mark.single_backend(
        "postgres", reason="SQLite is an embedded file: there is no server to restart"
    ),
    pytest.mark.skipif(
        bool(os.environ.get("PERDURE_TEST_DATABASE_URL")),
        reason="restarting PostgreSQL needs the embedded test server; PERDURE_TEST_DATABASE_URL "
        "points at a server this test does not control",
    ),
]

WORKFLOWS = 20
STEPS = 5
POSITIONS = range(1, STEPS + 1)  # the positions of each job's steps


def test_database_restarted_under_load(
    postgres_url: str, programs: Programs, tmp_path: Path
) -> None:
    """Twenty workflows checkpoint steps while the server is down and finish once it is back.

    PostgreSQL only: SQLite is an embedded file with no server to restart.
    """
    server = embedded_server(postgres_url)
    witness = Witness.create(postgres_url, tmp_path)
    load = programs.start("load", *witness.argv, str(WORKFLOWS), str(STEPS))
    wait_until(
        lambda: witness.milestones.count("at-gate") >= WORKFLOWS,
        what="every workflow to checkpoint two steps and enter its gate step",
        watch=[load],
    )
    postmaster_before = server.get_pid()
    with server_stopped(server):
        witness.milestones.record("server-down")
        # Each workflow now leaves its gate step and checkpoints it against a stopped server.
        wait_until(
            lambda: witness.milestones.count("gate-passed") >= WORKFLOWS,
            what="every workflow to leave its gate step",
            watch=[load],
        )
    assert server.get_pid() != postmaster_before, "the server should have restarted"
    load.expect_exit(0, timeout=90)

    jobs = {f"job-{index}" for index in range(WORKFLOWS)}
    workflows = witness.workflows()
    assert set(workflows) == jobs
    assert {info.status for info in workflows.values()} == {"SUCCESS"}
    for job in sorted(jobs):
        assert witness.steps(job) == [(position, "load_step") for position in POSITIONS], job
    counts = witness.effects.counts()
    expected = {f"job{i}-step{p}" for i in range(WORKFLOWS) for p in POSITIONS}
    assert set(counts) == expected  # each step's body ran at least once, and nothing else ran
    assert witness.outcomes() == [{"by": "", "output": [sum(POSITIONS)] * WORKFLOWS, "error": None}]
