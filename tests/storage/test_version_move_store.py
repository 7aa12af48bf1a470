"""Moving workflows onto another application version, and what heartbeats say each process
registers: the storage side of safe deploys, on both backends."""

from __future__ import annotations

import json

from perdure.storage import Store
from perdure.storage.records import ExecutorRecord, new_owner_token
from tests.storage.store_helpers import S, start, step_row
from tests.storage.test_queue_store import enqueue

INTERNAL = "_perdure_internal"


def move(store: Store, workflow_id: str, expected: int, token: int, version: str = "v2") -> bool:
    return store.move_to_version(
        workflow_id, app_version=version, queue_name=INTERNAL, expected_token=expected,
        token=token,
    )  # fmt: skip


def test_a_pending_workflow_moves_onto_the_internal_queue_with_its_steps(store: Store) -> None:
    token = start(store, "w", app_version="v1", workflow_timeout_ms=5000,
                  workflow_deadline_epoch_ms=99)  # fmt: skip
    assert store.record_step(step_row("w", 1, token)) is None
    new = new_owner_token()
    assert move(store, "w", token, new)
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.app_version, row.queue_name, row.owner_token) == (
        S.ENQUEUED, "v2", INTERNAL, new,
    )  # fmt: skip
    assert (row.workflow_timeout_ms, row.workflow_deadline_epoch_ms) == (None, None)
    assert row.recovery_attempts == 0
    assert [s.function_id for s in store.load_steps("w")] == [1]  # its record stays
    # The old execution is fenced off: its next checkpoint is refused.
    assert store.record_step(step_row("w", 2, token)) is not None
    assert move(store, "w", token, new)  # a retry after a lost acknowledgement finds it done


def test_an_enqueued_workflow_keeps_its_queue_and_place(store: Store) -> None:
    token = enqueue(store, "q1", app_version="v1", priority=7, queue_partition_key="p")
    new = new_owner_token()
    assert move(store, "q1", token, new)
    row = store.get_workflow("q1")
    assert row is not None
    assert (row.status, row.app_version, row.queue_name, row.priority) == (
        S.ENQUEUED, "v2", "q", 7,
    )  # fmt: skip
    assert row.queue_partition_key == "p"
    assert move(store, "q1", token, new)  # retried: its own write


def test_a_move_is_refused_once_another_claim_or_an_outcome_replaced_the_token(
    store: Store,
) -> None:
    token = start(store, "claimed", app_version="v1")
    assert not move(store, "claimed", token + 1, new_owner_token())  # read before a claim
    assert store.get_workflow("claimed").app_version == "v1"  # type: ignore[union-attr]
    done = start(store, "done", app_version="v1")
    assert store.finish_workflow("done", done, status=S.SUCCESS, output=None, error=None) is None
    assert not move(store, "done", done, new_owner_token())
    assert not move(store, "ghost", 1, new_owner_token())


def test_heartbeats_record_the_workflows_a_process_registers(store: Store) -> None:
    record = ExecutorRecord(
        instance_id="me", executor_id="local", app_version="v1", hostname="host", pid=1,
        started_at=0, heartbeat_at=0, lock_key=new_owner_token(),
        workflow_names=json.dumps(["a"]),
    )  # fmt: skip
    liveness = store.open_liveness(record)
    try:
        liveness.beat()
        [seen] = store.list_executors()
        assert seen.workflow_names == '["a"]'
        liveness.update(ExecutorRecord(**{**vars(record), "workflow_names": '["a", "b"]'}))
        liveness.beat()
        [seen] = store.list_executors()
        assert json.loads(seen.workflow_names or "") == ["a", "b"]
    finally:
        liveness.close()
