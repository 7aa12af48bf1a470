"""The installed ``perdure`` console script, run as a subprocess against real databases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSAwaitedWorkflowCancelledError
from perdure.queues.queue import QueueSpec
from perdure.storage import open_store
from tests.integration.system_tables import relaunch, run_sql

WAIT = 10.0
SCRIPT = Path(sys.executable).parent / "perdure"


def perdure(
    *args: str, db: str | None = None, answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``perdure [--db URL] ARGS``; the URL never comes from this process's environment."""
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_SYSTEM_DATABASE_URL"}
    command = [str(SCRIPT), *(["--db", db] if db else []), *args]
    return subprocess.run(
        command, input=answer, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def expect_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def history(dbos: type[DBOS], db_url: str) -> str:
    """Three finished workflows (one failed, one with a child) in the launched app's database."""

    @DBOS.step(name="greet")
    def greet(name: str) -> str:
        return f"hello {name}"

    @DBOS.workflow(name="greeter")
    def greeter(name: str) -> str:
        return greet(name)

    @DBOS.workflow(name="broken")
    def broken() -> None:
        raise RuntimeError("it broke")

    with SetWorkflowID("cli-1"):
        greeter("ann")
    with SetWorkflowID("cli-2"):
        greeter("bob")
    with SetWorkflowID("cli-3"), pytest.raises(RuntimeError):
        broken()
    return db_url


def test_workflow_list_table_and_json(history: str) -> None:
    table = perdure("workflow", "list", db=history)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["WORKFLOW", "ID", "STATUS"]
    assert [line.split()[0] for line in lines[2:]] == ["cli-3", "cli-2", "cli-1"]  # newest first
    assert "ERROR" in lines[2]
    assert "broken" in lines[2]

    listed = perdure("--json", "workflow", "list", "--asc", "--limit", "2", db=history)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["workflow_id"] for r in rows] == ["cli-1", "cli-2"]
    assert rows[0]["name"] == "greeter"

    filtered = perdure("workflow", "list", "--status", "error", "--json", db=history)
    assert [r["workflow_id"] for r in json.loads(filtered.stdout)] == ["cli-3"]
    by_prefix = perdure("workflow", "list", "--prefix", "cli-2", "--name", "greeter", "--json",
                        db=history)  # fmt: skip
    assert [r["workflow_id"] for r in json.loads(by_prefix.stdout)] == ["cli-2"]


def test_workflow_get_and_steps(history: str) -> None:
    shown = perdure("workflow", "get", "cli-1", db=history)
    assert shown.returncode == 0, shown.stderr
    fields = {k: v.strip() for k, _, v in (ln.partition(" ") for ln in shown.stdout.splitlines())}
    assert fields["status"] == "SUCCESS"
    assert fields["output"] == "hello ann"

    as_json = json.loads(perdure("--json", "workflow", "get", "cli-3", db=history).stdout)
    assert as_json["status"] == "ERROR"
    assert as_json["error"]["message"] == "it broke"

    steps = perdure("workflow", "steps", "cli-2", db=history)
    assert steps.returncode == 0, steps.stderr
    assert steps.stdout.splitlines()[2].split()[:4] == ["1", "greet", "hello", "bob"]
    step_json = json.loads(perdure("workflow", "steps", "cli-2", "--json", db=history).stdout)
    assert step_json[0]["output"] == "hello bob"


def test_workflow_cancel_resume_and_fork(dbos: type[DBOS], db_url: str) -> None:
    # On SQLite the app sees the command line's writes by polling: make it poll often.
    relaunch(db_url, notification_listener_polling_interval_sec=0.05)
    entered, gate = threading.Event(), threading.Event()

    @DBOS.step()
    def wait_for_gate() -> None:
        entered.set()
        assert gate.wait(WAIT)

    @DBOS.workflow()
    def gated() -> str:
        wait_for_gate()
        return "through"

    with SetWorkflowID("to-cancel"):
        handle = DBOS.start_workflow(gated)
    assert entered.wait(WAIT)
    cancelled = perdure("workflow", "cancel", "to-cancel", db=db_url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "CANCELLED" in cancelled.stdout
    gate.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()

    resumed = json.loads(perdure("--json", "workflow", "resume", "to-cancel", db=db_url).stdout)
    assert resumed["workflow_id"] == "to-cancel"
    assert resumed["status"] in ("ENQUEUED", "PENDING", "SUCCESS")  # the app may be quick
    forked = perdure("workflow", "fork", "to-cancel", "--step", "1", "--id", "the-fork", db=db_url)
    assert forked.returncode == 0, forked.stderr
    assert "the-fork" in forked.stdout
    # The app launched in this process picks both up from the internal queue.
    assert DBOS.retrieve_workflow("to-cancel").get_result() == "through"
    assert DBOS.retrieve_workflow("the-fork").get_result() == "through"
    assert DBOS.get_workflow_status("the-fork").forked_from == "to-cancel"  # type: ignore[union-attr]


def test_queue_list(history: str) -> None:
    empty = perdure("queue", "list", db=history)
    assert empty.returncode == 0, empty.stderr
    header, rule, *rows = empty.stdout.splitlines()
    assert header.split("  ") == ["QUEUE", "ENQUEUED", "RUNNING", "CONCURRENCY", "PER WORKER",
                                  "RATE LIMIT", "NOTES"]  # fmt: skip
    assert set(rule) == {"-", " "}
    assert rows == []

    # Defined by another process, whose build alone runs these (the app here serves every
    # stored queue, but claims only workflows of its own version).
    spec = QueueSpec.create("mail", 3, {"limit": 10, "period": 2.0}, priority_enabled=True)
    store = open_store(history)
    try:
        store.save_queue(spec.record())
    finally:
        store.close()
    run_sql(history, "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = 'mail', "
            "app_version = 'other-build' WHERE workflow_id IN ('cli-1', 'cli-2')")  # fmt: skip
    run_sql(history, "UPDATE {p}workflow_status SET status = 'PENDING', queue_name = 'orphan', "
            "instance_id = 'elsewhere' WHERE workflow_id = 'cli-3'")  # fmt: skip
    table = perdure("queue", "list", db=history)
    rows = [line.split() for line in table.stdout.splitlines()[2:]]
    assert rows == [
        ["mail", "2", "0", "3", "-", "10", "per", "2s", "priority"],
        ["orphan", "0", "1", "not", "defined"],
    ]
    listed = json.loads(perdure("queue", "list", "--json", db=history).stdout)
    assert listed == [
        {
            "queue_name": "mail", "enqueued": 2, "running": 0, "internal": False,
            "settings": {
                "concurrency": 3, "worker_concurrency": None,
                "limiter": {"limit": 10, "period": 2.0}, "priority_enabled": True,
                "partition_queue": False, "polling_interval_sec": 1.0,
                "partition_concurrency": None, "partition_worker_concurrency": None,
                "partition_limiter": None,
            },
        },
        {"queue_name": "orphan", "enqueued": 0, "running": 1, "internal": False, "settings": None},
    ]  # fmt: skip


def test_executor_list(dbos: type[DBOS], db_url: str) -> None:
    table = perdure("executor", "list", db=db_url)
    assert table.returncode == 0, table.stderr
    header, _rule, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["INSTANCE", "EXECUTOR", "HOST"]
    assert len(rows) == 1  # this test process, launched by the fixture
    listed = json.loads(perdure("executor", "list", "--json", db=db_url).stdout)
    assert [(e["executor_id"], e["hostname"], e["pid"]) for e in listed] == [
        ("local", socket.gethostname(), os.getpid())
    ]
    assert listed[0]["started_at"] <= listed[0]["heartbeat_at"]
    assert rows[0].split()[:2] == [listed[0]["instance_id"], "local"]


def test_migrate_and_reset(db_url: str) -> None:
    missing = perdure("workflow", "list", db=db_url)
    expect_one_line_error(missing, "perdure: error:", "migrate")

    migrated = perdure("migrate", db=db_url)
    assert migrated.returncode == 0, migrated.stderr
    listed = perdure("workflow", "list", "--json", db=db_url)
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])

    declined = perdure("reset", db=db_url, answer="n\n")
    assert declined.returncode != 0
    assert perdure("workflow", "list", db=db_url).returncode == 0  # still there

    reset = perdure("reset", "-y", db=db_url)
    assert reset.returncode == 0, reset.stderr
    expect_one_line_error(perdure("workflow", "list", db=db_url), "no Perdure schema")


def test_errors_are_one_line_without_traceback(history: str, tmp_path: Path) -> None:
    unknown = [
        ["get", "nope"],
        ["steps", "nope"],
        ["cancel", "nope"],
        ["fork", "nope", "--step", "1"],
    ]
    for command in unknown:
        expect_one_line_error(perdure("workflow", *command, db=history), "nope")
    expect_one_line_error(perdure("workflow", "list"), "--db")
    unreachable = "postgresql://perdure@127.0.0.1:9/none"
    expect_one_line_error(perdure("workflow", "list", db=unreachable), "Cannot connect")
    no_file = f"sqlite:///{tmp_path / 'absent.sqlite'}"
    expect_one_line_error(perdure("workflow", "list", db=no_file), "does not exist")
