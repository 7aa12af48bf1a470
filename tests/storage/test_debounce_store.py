"""`Store.debounce_workflow`: a call lands on the workflow waiting under its key while its
window is open, frees the key of one whose window closed, and reports any other holder."""

from __future__ import annotations

from typing import Any

from perdure.storage import Store
from perdure.storage.records import Debounced, DebounceOutcome, DebounceRequest
from tests.storage.store_helpers import S, start

NOW = 1_000_000
KEY = "wf-k"


def waiting(store: Store, workflow_id: str, **fields: Any) -> None:
    """A delayed workflow ``wf`` on queue ``q`` holding the key, created at 0, start at NOW+1s."""
    start(
        store,
        workflow_id,
        **{
            "status": S.ENQUEUED,
            "queue_name": "q",
            "deduplication_id": KEY,
            "not_before_epoch_ms": NOW + 1_000,
            "created_at": 0,
            **fields,
        },
    )


def call(store: Store, *, start_at: int = NOW + 5_000, timeout_ms: int | None = None) -> Any:
    request = DebounceRequest(
        queue_name="q", deduplication_id=KEY, workflow_name="wf", inputs=b'["new"]',
        serialization="json", now_epoch_ms=NOW, not_before_epoch_ms=start_at,
        timeout_ms=timeout_ms,
    )  # fmt: skip
    return store.debounce_workflow(request)


def test_an_open_window_takes_the_inputs_and_the_start_time(store: Store) -> None:
    waiting(store, "w")
    assert call(store) == DebounceOutcome(Debounced.BOUNCED, "w")
    row = store.get_workflow("w")
    assert row is not None
    assert (row.inputs, row.not_before_epoch_ms, row.deduplication_id) == (
        b'["new"]',
        NOW + 5_000,
        KEY,
    )
    # An earlier start time is taken too (a shorter period).
    assert call(store, start_at=NOW + 10) == DebounceOutcome(Debounced.BOUNCED, "w")
    row = store.get_workflow("w")
    assert row is not None
    assert row.not_before_epoch_ms == NOW + 10


def test_a_timeout_caps_the_start_and_closes_the_window(store: Store) -> None:
    waiting(store, "w", created_at=NOW - 1_000)
    assert call(store, timeout_ms=3_000) == DebounceOutcome(Debounced.BOUNCED, "w")
    row = store.get_workflow("w")
    assert row is not None
    assert row.not_before_epoch_ms == NOW + 2_000  # created + timeout
    # Its window ended (created + timeout is not ahead): the key is freed, the workflow kept.
    assert call(store, timeout_ms=1_000) == DebounceOutcome(Debounced.FREE)
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.deduplication_id, row.inputs) == (S.ENQUEUED, None, b'["new"]')


def test_a_started_or_ready_workflow_gives_its_key_up(store: Store) -> None:
    waiting(store, "ready", not_before_epoch_ms=NOW)  # its start time came: the window closed
    assert call(store) == DebounceOutcome(Debounced.FREE)
    running = "running"
    waiting(store, running, status=S.PENDING)
    assert call(store) == DebounceOutcome(Debounced.FREE)
    for workflow_id in ("ready", running):
        row = store.get_workflow(workflow_id)
        assert row is not None
        assert (row.deduplication_id, row.inputs) == (None, b"[]")


def test_other_holders_of_the_key_are_reported(store: Store) -> None:
    assert call(store) == DebounceOutcome(Debounced.FREE)  # nobody holds it
    waiting(store, "other-name", name="wf-other")
    assert call(store) == DebounceOutcome(Debounced.HELD, "other-name")
    store.cancel_workflows(("other-name",), with_children=False)
    waiting(store, "plain", not_before_epoch_ms=None)  # a plain enqueue, no start time
    assert call(store) == DebounceOutcome(Debounced.HELD, "plain")
    row = store.get_workflow("plain")
    assert row is not None
    assert (row.inputs, row.deduplication_id) == (b"[]", KEY)
