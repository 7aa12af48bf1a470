"""A failed completion write never leaves waiters in this process hanging."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.storage.interface import mark_unavailable


def test_waiters_wake_when_the_completion_write_fails(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store
    original = store.complete_workflow
    failed = threading.Event()

    def failing(*args: Any, **kwargs: Any) -> bool:
        failed.set()
        raise OSError("database unreachable (simulated)")

    monkeypatch.setattr(store, "complete_workflow", failing)
    with SetWorkflowID("w1"), pytest.raises(OSError, match="simulated"):
        flow()
    assert failed.is_set()
    monkeypatch.setattr(store, "complete_workflow", original)
    # Not stuck as "running here": the ID is free and the row is PENDING for recovery.
    assert not runtime.engine.is_active("w1")
    status = DBOS.get_workflow_status("w1")
    assert status is not None
    assert status.status == "PENDING"


def test_a_system_database_failure_leaves_the_workflow_pending_not_failed(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    @DBOS.step()
    def work() -> int:
        return 1

    @DBOS.workflow()
    def flow() -> int:
        return work()

    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise mark_unavailable(sqlite3.OperationalError("disk I/O error (simulated)"))

    monkeypatch.setattr(store, "record_step", unreachable)
    with SetWorkflowID("w2"), pytest.raises(sqlite3.OperationalError, match="simulated"):
        flow()
    monkeypatch.undo()
    status = DBOS.get_workflow_status("w2")
    assert status is not None
    assert status.status == "PENDING"  # for recovery: the outage is not the workflow's error
