"""A failed completion write never leaves waiters in this process hanging."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from perdure import DBOS, SetWorkflowID


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
