"""Heartbeats and the takeover of a silent process's PENDING workflows, on both backends.

A dead process is simulated in the tables: its ``executors`` row carries a heartbeat from long
ago, and it owns a PENDING workflow whose last step was never recorded. (The SIGKILL version
is in tests/crash/test_takeover_of_dead_process.py.)
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSInitializationError
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import relaunch, run_sql, workflow_row

FAST = {"heartbeat_interval_sec": 0.05, "dead_executor_timeout_sec": 0.3}
# A heartbeat time no clock reaches: the process that wrote it looks alive for ever.
FOREVER_MS = 2**62


def _executor_row(db_url: str, instance_id: str, heartbeat_at: int) -> None:
    run_sql(
        db_url,
        "INSERT INTO {p}executors (instance_id, executor_id, app_version, hostname, pid, "
        "started_at, heartbeat_at) VALUES (:i, 'elsewhere', '', 'other-host', 1, 0, :h)",
        i=instance_id,
        h=heartbeat_at,
    )


def _orphan(db_url: str, workflow_id: str, owner: str) -> None:
    """Make a finished workflow look interrupted in ``owner``'s process before its last step."""
    run_sql(
        db_url,
        "UPDATE {p}workflow_status SET status = 'PENDING', output = NULL, "
        "executor_id = 'elsewhere', instance_id = :o WHERE workflow_id = :w",
        o=owner,
        w=workflow_id,
    )
    run_sql(
        db_url,
        "DELETE FROM {p}operation_outputs WHERE workflow_id = :w AND function_id = 3",
        w=workflow_id,
    )


def test_the_workflows_of_a_silent_process_are_taken_over(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    counts: Counter[str] = Counter()

    @DBOS.step()
    def tick(name: str) -> str:
        counts[name] += 1
        return name

    @DBOS.workflow()
    def ticks() -> list[str]:
        return [tick("a"), tick("b"), tick("c")]

    for workflow_id in ("of-the-dead", "of-the-living", "of-another-app"):
        with SetWorkflowID(workflow_id):
            ticks()
    counts.clear()
    # Takeover visits the longest-silent first: the other app's process, then ours.
    _executor_row(db_url, "dead-other-app", heartbeat_at=0)
    _executor_row(db_url, "dead-instance", heartbeat_at=1)
    _executor_row(db_url, "live-instance", heartbeat_at=FOREVER_MS)
    _orphan(db_url, "of-the-dead", "dead-instance")
    _orphan(db_url, "of-the-living", "live-instance")
    _orphan(db_url, "of-another-app", "dead-other-app")
    run_sql(db_url, "UPDATE {p}workflow_status SET name = 'not_registered_here' "
            "WHERE workflow_id = 'of-another-app'")  # fmt: skip

    relaunch(db_url, executor_id="taker", **FAST)
    wait_until(lambda: workflow_row(db_url, "of-the-dead").status == "SUCCESS",
               what="the takeover")  # fmt: skip
    taken = workflow_row(db_url, "of-the-dead")
    assert (taken.executor_id, taken.recovery_attempts) == ("taker", 2)
    assert DBOS.retrieve_workflow("of-the-dead").get_result() == ["a", "b", "c"]
    assert counts == Counter({"c": 1})  # only the unrecorded step ran again
    # The dead process's row is gone with its work; the live one keeps its workflow and row.
    # A workflow this process cannot run stays with its dead owner, for a process that can.
    instances = {r[0] for r in run_sql(db_url, "SELECT instance_id FROM {p}executors")}
    assert "dead-instance" not in instances
    assert {"live-instance", "dead-other-app"} <= instances
    living = workflow_row(db_url, "of-the-living")
    assert (living.status, living.instance_id) == ("PENDING", "live-instance")
    foreign = workflow_row(db_url, "of-another-app")
    assert (foreign.status, foreign.instance_id) == ("PENDING", "dead-other-app")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_launched_process_records_its_heartbeats(dbos: type[DBOS], db_url: str) -> None:
    relaunch(db_url, executor_id="beating", **FAST)

    def heartbeat() -> int:
        rows = run_sql(
            db_url, "SELECT heartbeat_at FROM {p}executors WHERE executor_id = 'beating'"
        )
        return int(rows[0][0]) if rows else 0

    first = wait_until(heartbeat, what="the first heartbeat")
    wait_until(lambda: heartbeat() > first, what="a later heartbeat")
    (row,) = run_sql(db_url, "SELECT hostname, pid, started_at FROM {p}executors "
                     "WHERE executor_id = 'beating'")  # fmt: skip
    assert (row[0], row[1]) == (socket.gethostname(), os.getpid())
    assert 0 < row[2] <= first


def test_the_timeout_must_span_at_least_two_heartbeats(db_url: str) -> None:
    config = make_config(db_url, heartbeat_interval_sec=10, dead_executor_timeout_sec=15)
    with pytest.raises(DBOSInitializationError, match="dead_executor_timeout_sec"):
        DBOS(config=config)
