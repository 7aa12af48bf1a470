"""Safe deploys in one process, both backends: what heartbeats say each process registers, the
stranded workflows a launched app and its admin API report, and moving a workflow onto another
version (refused when its replay diverges, unless forced). Real processes of two versions are
in ``tests/crash/test_stranded_versions.py``."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSException, DBOSNonExistentWorkflowError
from perdure.management.stranded import find_stranded
from perdure.storage.records import WorkflowRow, new_owner_token
from perdure.storage.records import WorkflowStatusString as S
from perdure.testing import ReplayDivergedError, move_to_version
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import workflow_row


@pytest.fixture
def app(db_url: str) -> Iterator[str]:
    """A launched app with fast heartbeats and an admin server; its admin URL."""
    DBOS(config=make_config(db_url, heartbeat_interval_sec=0.05, admin_server={"port": 0}))

    @DBOS.workflow(name="known")
    def known() -> None:
        pass

    DBOS.launch()
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.admin_server is not None
    yield runtime.admin_server.url
    DBOS.destroy(destroy_registry=True)


def names_of_this_process() -> list[str]:
    runtime = DBOS._runtime
    assert runtime is not None
    [me] = runtime.engine.store.list_executors()
    return list(json.loads(me.workflow_names or "null"))


def test_heartbeats_record_the_workflows_registered_even_after_launch(app: str) -> None:
    assert "known" in names_of_this_process()

    @DBOS.workflow(name="late")
    def late() -> None:
        pass

    wait_until(lambda: "late" in names_of_this_process(), what="the late registration")


def fabricate(workflow_id: str, **changes: object) -> None:
    """Record a workflow row as another (dead) process of another version left it."""
    runtime = DBOS._runtime
    assert runtime is not None
    row = WorkflowRow(
        workflow_id=workflow_id, status=S.PENDING, name="known", class_name=None,
        config_name=None, inputs=None, output=None, error=None, serialization="json",
        executor_id="gone", instance_id="ghost", app_version="", queue_name=None,
        authenticated_user=None, created_at=1, updated_at=1, recovery_attempts=1,
        workflow_timeout_ms=None, workflow_deadline_epoch_ms=None, parent_workflow_id=None,
        forked_from=None, deduplication_id=None, priority=0, owner_token=new_owner_token(),
    )  # fmt: skip
    assert runtime.engine.store.start_workflow(replace(row, **changes)).created  # type: ignore[arg-type]


def test_stranded_workflows_are_reported_with_their_reason(app: str) -> None:
    fabricate("old-version", app_version="v9")
    fabricate("renamed", name="renamed-since")
    fabricate("queued-old", status=S.ENQUEUED, queue_name="q", app_version="v0")
    runtime = DBOS._runtime
    assert runtime is not None
    engine = runtime.engine

    found = find_stranded(engine.store, this_instance=engine.instance_id)

    reasons = {s.workflow_id: (s.cause, s.reason) for s in found}
    assert reasons == {
        "old-version": (
            "version_not_served", "no live process serves version 'v9' (live versions: '')",
        ),
        "renamed": (
            "function_not_registered",
            "no live process of any version registers workflow 'renamed-since'",
        ),
        "queued-old": (
            "version_not_served", "no live process serves version 'v0' (live versions: '')",
        ),
    }  # fmt: skip
    with urllib.request.urlopen(f"{app}/stranded", timeout=20) as response:  # noqa: S310 - local
        listed = json.loads(response.read())
    assert {w["workflow_id"]: (w["cause"], w["reason"]) for w in listed} == reasons
    assert find_stranded(engine.store, this_instance=engine.instance_id, limit=1) == found[:1]


def test_a_move_is_refused_when_the_replay_diverges_unless_forced(
    dbos: type[DBOS], db_url: str
) -> None:
    entered, release = threading.Event(), threading.Event()

    @DBOS.step(name="s1")
    def s1() -> int:
        return 1

    @DBOS.step(name="s2")
    def s2(value: int) -> int:
        entered.set()
        release.wait(30)
        return value + 1

    @DBOS.workflow(name="two")
    def two() -> int:
        return s2(s1())

    with SetWorkflowID("w"):
        handle = DBOS.start_workflow(two)
    assert entered.wait(30)
    DBOS.cancel_workflow("w")
    release.set()
    wait_until(lambda: handle.get_status().status == S.CANCELLED, what="w cancelled")

    @DBOS.step(name="s1-renamed")
    def s1_renamed() -> int:
        return 1

    @DBOS.workflow(name="two")
    def two_v2() -> int:
        return s2(s1_renamed())

    with pytest.raises(ReplayDivergedError, match="was not moved to version 'v2'") as refused:
        move_to_version("w", to_version="v2", database_url=db_url)
    assert refused.value.result.divergence is not None
    assert refused.value.result.divergence.position == 1
    assert workflow_row(db_url, "w").status == S.CANCELLED

    forked = move_to_version("w", to_version="v2", database_url=db_url, force=True, fork=True)
    assert forked.forced
    assert forked.fork_id is not None
    fork = workflow_row(db_url, forked.fork_id)
    assert (fork.app_version, fork.forked_from, fork.status) == ("v2", "w", S.ENQUEUED)

    moved = move_to_version("w", to_version="v2", database_url=db_url, force=True)
    assert (moved.from_version, moved.to_version, moved.fork_id) == ("", "v2", None)
    row = workflow_row(db_url, "w")
    assert (row.status, row.app_version, row.queue_name) == (
        S.ENQUEUED, "v2", "_perdure_internal",
    )  # fmt: skip

    @DBOS.workflow(name="two")
    def two_v3() -> int:
        return s2(s1())

    with SetWorkflowID("done"):
        assert two_v3() == 2
    with pytest.raises(DBOSException, match="already finished"):
        move_to_version("done", to_version="v2", database_url=db_url)
    with pytest.raises(DBOSNonExistentWorkflowError):
        move_to_version("nobody", to_version="v2", database_url=db_url)
