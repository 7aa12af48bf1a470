"""Rewinding a workflow in the store: what is undone from the cut on, and the compare-and-set."""

from __future__ import annotations

from typing import Any

import pytest

from perdure.storage import Store
from perdure.storage.records import Rewind, new_owner_token
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import S, recv_step, send, snapshot, start, step_row

SET_EVENT = "DBOS.setEvent"


def _finished(store: Store) -> int:
    """Workflow "w", finished, after these operations (by position):

    1 a step; 2 event a=1; 3 recv of m1; 4 event a=2; 5 event b=1; 6 stream entry; 7 recv of
    m2; 8 stream close; 9 a step that set event c=1 from inside it. Then m3 arrives unread.
    """
    token = start(store, "w")
    assert store.record_step(step_row("w", 1, token)) is None
    store.set_event("w", "a", b"1", "json", step=step_row("w", 2, token, name=SET_EVENT))
    send(store, "m1", b'"one"')
    assert store.receive_message("w", "t", recv_step("w", 3, token)) is not None
    store.set_event("w", "a", b"2", "json", step=step_row("w", 4, token, name=SET_EVENT))
    store.set_event("w", "b", b"1", "json", step=step_row("w", 5, token, name=SET_EVENT))
    store.write_stream("w", "s", b"x", "json", closed=False, step=step_row("w", 6, token))
    send(store, "m2", b'"two"')
    assert store.receive_message("w", "t", recv_step("w", 7, token)) is not None
    store.write_stream("w", "s", None, "json", closed=True, step=step_row("w", 8, token))
    store.set_event("w", "c", b"1", "json", owner_token=token, function_id=9)
    assert store.record_step(step_row("w", 9, token)) is None
    assert store.finish_workflow("w", token, status=S.SUCCESS, output=b'"done"') is None
    send(store, "m3", b'"three"')
    return token


def _events(store: Store) -> dict[str, bytes | None]:
    return {key: payload.data for key, payload in store.get_events("w").items()}


def _history(store: Store) -> list[tuple[int, str]]:
    query = "SELECT function_id, key FROM {p}workflow_events_history WHERE workflow_id = 'w'"
    rows = [tuple(r) for r in run_sql(store.url, query)]
    return sorted((int(r[0]), str(r[1])) for r in rows)


def _mailbox(store: Store) -> list[tuple[Any, ...]]:
    query = (
        "SELECT message_id, consumed, consumed_by FROM {p}notifications "
        "WHERE destination_id = 'w' ORDER BY seq"
    )
    return [tuple(r) for r in run_sql(store.url, query)]


def test_a_rewind_undoes_what_the_workflow_did_from_the_cut_on(store: Store) -> None:
    _finished(store)
    assert _history(store) == [(2, "a"), (4, "a"), (5, "b"), (9, "c")]
    assert _mailbox(store) == [("m1", 1, 3), ("m2", 1, 7), ("m3", 0, None)]
    token = new_owner_token()

    found = store.rewind_workflow(
        "w", start_step=4, queue_name="q", partition_key="p", app_version="v2", token=token
    )

    assert found == Rewind(status=S.SUCCESS, rewound=True)
    assert [s.function_id for s in store.load_steps("w")] == [1, 2, 3]
    assert _events(store) == {"a": b"1"}  # a: back to its value before the cut; b, c: gone
    assert _history(store) == [(2, "a")]
    assert _mailbox(store) == [("m1", 1, 3)]  # taken before the cut; m2 taken after, m3 unread
    entries = store.read_stream("w", "s", 0)
    assert [(e.offset, e.value.data, e.closed) for e in entries] == [(0, b"x", False)]
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.queue_name, row.queue_partition_key, row.app_version) == (
        S.ENQUEUED, "q", "p", "v2",
    )  # fmt: skip
    assert (row.owner_token, row.output, row.error, row.completed_at) == (token, None, None, None)
    assert (row.recovery_attempts, row.workflow_deadline_epoch_ms) == (0, None)


def test_a_retried_rewind_recognises_its_own_commit_by_its_token(store: Store) -> None:
    _finished(store)
    token = new_owner_token()
    assert store.rewind_workflow("w", start_step=1, queue_name="q", token=token).rewound
    before = snapshot(store.url)
    again = store.rewind_workflow("w", start_step=1, queue_name="q", token=token)
    assert again == Rewind(status=S.ENQUEUED, rewound=True)
    other = store.rewind_workflow("w", start_step=1, queue_name="q", token=new_owner_token())
    assert other == Rewind(status=S.ENQUEUED, rewound=False)
    assert snapshot(store.url) == before


def test_a_rewind_keeps_the_version_unless_given_one(store: Store) -> None:
    _finished(store)
    run_sql(store.url, "UPDATE {p}workflow_status SET app_version = 'v1' WHERE workflow_id = 'w'")
    assert store.rewind_workflow("w", start_step=9, queue_name="q", token=new_owner_token()).rewound
    row = store.get_workflow("w")
    assert row is not None
    assert (row.app_version, row.queue_partition_key) == ("v1", None)
    assert [s.function_id for s in store.load_steps("w")] == list(range(1, 9))
    assert _events(store) == {"a": b"2", "b": b"1"}  # c was set at 9, and never before


@pytest.mark.parametrize("status", [S.PENDING, S.ENQUEUED])
def test_only_a_finished_workflow_is_rewound(store: Store, status: str) -> None:
    start(store, "w", status=status)
    before = snapshot(store.url)
    refused = store.rewind_workflow("w", start_step=1, queue_name="q", token=new_owner_token())
    assert refused == Rewind(status=status, rewound=False)
    missing = store.rewind_workflow("nope", start_step=1, queue_name="q", token=1)
    assert missing == Rewind(status=None, rewound=False)
    assert snapshot(store.url) == before


@pytest.mark.parametrize("status", [S.ERROR, S.CANCELLED, S.MAX_RECOVERY_ATTEMPTS_EXCEEDED])
def test_every_finished_status_is_rewound(store: Store, status: str) -> None:
    start(store, "w", status=status)
    found = store.rewind_workflow("w", start_step=1, queue_name="q", token=new_owner_token())
    assert found == Rewind(status=status, rewound=True)


def test_deleting_a_workflow_deletes_its_event_history(store: Store) -> None:
    _finished(store)
    assert store.delete_workflows(("w",), with_children=False) == ["w"]
    assert _history(store) == []
