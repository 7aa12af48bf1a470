"""Operators' calls: list, count, cancel, resume, requeue, fork and delete workflows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from perdure.storage import Store
from perdure.storage.records import (
    QueueCounts,
    Unrecorded,
    WorkflowQuery,
    WorkflowRow,
    new_owner_token,
)
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import (
    S,
    recv_step,
    send,
    start,
    step_outputs,
    step_row,
    workflow_row,
)


def _listed(store: Store, **query: Any) -> list[str]:
    return [r.workflow_id for r in store.list_workflows(WorkflowQuery(**query))]


# -- listing --------------------------------------------------------------------------------------


@pytest.fixture
def listed(store: Store) -> Store:
    """Six workflows of various kinds, created at 10, 20, ... 60."""
    rows = [
        workflow_row("a", created_at=10, name="n1", instance_id="i1", app_version="v1"),
        workflow_row("b", created_at=20, name="n2", status=S.SUCCESS, authenticated_user="ann"),
        workflow_row("c", created_at=30, status=S.ENQUEUED, queue_name="q", instance_id="i2"),
        workflow_row("d", created_at=40, queue_name="q", instance_id="i2", app_version="v2"),
        workflow_row("e", created_at=50, status=S.ERROR, queue_name="r", output=b"o", error=b"x"),
        workflow_row("f", created_at=60, status=S.CANCELLED, name="n1"),
    ]
    for row in rows:
        assert store.start_workflow(row).created
    return store


def test_a_listing_filters_by_every_field(listed: Store) -> None:
    assert _listed(listed) == ["a", "b", "c", "d", "e", "f"]
    assert _listed(listed, workflow_ids=("e", "a", "zz")) == ["a", "e"]
    assert _listed(listed, statuses=(S.SUCCESS, S.CANCELLED)) == ["b", "f"]
    assert _listed(listed, names=("n1",)) == ["a", "f"]
    assert _listed(listed, app_versions=("v1", "v2")) == ["a", "d"]
    assert _listed(listed, users=("ann",)) == ["b"]
    assert _listed(listed, queue_names=("q",)) == ["c", "d"]
    assert _listed(listed, owners=("i2",)) == ["c", "d"]
    assert _listed(listed, queued_only=True) == ["c", "d"]  # unfinished and on a queue
    assert _listed(listed, statuses=()) == []
    assert _listed(listed, names=("n1",), statuses=(S.PENDING,)) == ["a"]


def test_a_listing_filters_by_lineage_executor_and_schedule(store: Store) -> None:
    start(store, "src", executor_id="ex1", schedule_name="nightly", created_at=0)
    start(store, "kid", parent_workflow_id="src", executor_id="ex2")
    fork = workflow_row("fork", forked_from="src", executor_id="ex2", created_at=2)
    assert store.fork_workflow(fork, source_id="src", start_step=1)
    assert _listed(store, forked_from=("src",)) == ["fork"]
    assert _listed(store, parent_workflow_ids=("src", "x")) == ["kid"]
    assert _listed(store, executor_ids=("ex2",)) == ["kid", "fork"]
    assert _listed(store, schedule_names=("nightly",)) == ["src"]
    assert _listed(store, was_forked_from=True) == ["src"]
    assert _listed(store, was_forked_from=False) == ["kid", "fork"]
    assert _listed(store, is_fork=True) == ["fork"]
    assert _listed(store, is_fork=False) == ["src", "kid"]
    assert _listed(store, has_parent=True) == ["kid"]
    assert _listed(store, has_parent=False, is_fork=False) == ["src"]
    row = store.get_workflow("src")
    assert row is not None
    assert (row.was_forked_from, row.schedule_name) == (True, "nightly")


def test_a_listing_bounds_creation_times_inclusively(listed: Store) -> None:
    assert _listed(listed, created_from_ms=20, created_to_ms=40) == ["b", "c", "d"]
    assert _listed(listed, created_from_ms=41) == ["e", "f"]
    assert _listed(listed, created_to_ms=10) == ["a"]


def test_a_listing_bounds_end_and_dequeue_times_and_skips_rows_without_them(
    store: Store,
) -> None:
    for n, workflow_id in enumerate("abc"):
        start(store, workflow_id, created_at=n, completed_at=100 + n, dequeued_at_epoch_ms=10 + n)
    start(store, "never", created_at=9)  # neither ended nor dequeued
    assert _listed(store, completed_from_ms=101) == ["b", "c"]
    assert _listed(store, completed_to_ms=101) == ["a", "b"]
    assert _listed(store, dequeued_from_ms=11, dequeued_to_ms=11) == ["b"]
    assert _listed(store, dequeued_to_ms=1_000) == ["a", "b", "c"]


def test_the_end_time_is_recorded_when_a_workflow_ends_and_cleared_on_resume(
    store: Store,
) -> None:
    done, cancelled = start(store, "done"), start(store, "cancelled")
    assert store.finish_workflow("done", done, status=S.SUCCESS, output=b"1") is None
    store.cancel_workflows(("cancelled",), with_children=False)
    ended = {w: _row(store, w).completed_at for w in ("done", "cancelled")}
    assert all(t is not None and t > 1_000_000_000_000 for t in ended.values())
    assert store.finish_workflow("done", done, status=S.SUCCESS, output=b"1") is None  # a retry
    assert _row(store, "done").completed_at == ended["done"]
    assert cancelled  # its token
    resumed = store.resume_workflow(
        "cancelled", executor_id="e", instance_id="i", token=new_owner_token()
    )
    assert resumed is not None
    assert resumed.completed_at is None
    assert _listed(store, completed_to_ms=2**62) == ["done"]


def _row(store: Store, workflow_id: str) -> WorkflowRow:
    row = store.get_workflow(workflow_id)
    assert row is not None
    return row


def test_attributes_are_replaced_merged_and_matched_as_json(store: Store) -> None:
    assert store.start_workflow(workflow_row("x", attributes='{"a": 1, "b": {"c": [1, 2]}}'))
    assert store.start_workflow(workflow_row("y", attributes='{"a": "1", "n": null}'))
    assert store.start_workflow(workflow_row("z"))
    pairs = lambda **kv: tuple((k, json.dumps(v)) for k, v in kv.items())  # noqa: E731
    assert _listed(store, attributes=pairs(a=1)) == ["x"]  # 1 is not "1"
    assert _listed(store, attributes=pairs(a="1")) == ["y"]
    assert _listed(store, attributes=pairs(b={"c": [1, 2]})) == ["x"]
    assert _listed(store, attributes=pairs(n=None)) == ["y"]  # a JSON null, not a missing key
    assert _listed(store, attributes=pairs(a=1, n=None)) == []
    assert store.update_workflow_attributes("x", {"a": 2, "d": None}, merge=True)
    assert json.loads(_row(store, "x").attributes or "") == {"a": 2, "b": {"c": [1, 2]}, "d": None}
    assert store.update_workflow_attributes("z", {"k": "v"}, merge=True)  # onto none at all
    assert json.loads(_row(store, "z").attributes or "") == {"k": "v"}
    assert store.update_workflow_attributes("y", None, merge=False)
    assert _row(store, "y").attributes is None
    assert not store.update_workflow_attributes("missing", {"k": 1}, merge=False)


def test_enqueued_and_delayed_statuses_split_waiting_workflows_by_start_time(
    store: Store,
) -> None:
    start(store, "ready", status=S.ENQUEUED, queue_name="q", created_at=1)
    start(store, "due", status=S.ENQUEUED, queue_name="q", created_at=2, not_before_epoch_ms=5)
    start(store, "later", status=S.ENQUEUED, queue_name="q", created_at=3,
          not_before_epoch_ms=2**62)  # fmt: skip
    start(store, "running", queue_name="q", created_at=4)
    assert _listed(store, statuses=(S.ENQUEUED,)) == ["ready", "due"]
    assert _listed(store, statuses=(S.DELAYED,)) == ["later"]
    assert _listed(store, statuses=(S.DELAYED, S.ENQUEUED)) == ["ready", "due", "later"]
    assert _listed(store, statuses=(S.DELAYED, S.PENDING)) == ["later", "running"]


def test_queued_only_keeps_unfinished_workflows_unless_statuses_are_given(
    listed: Store,
) -> None:
    assert _listed(listed, queued_only=True) == ["c", "d"]
    assert _listed(listed, queued_only=True, statuses=(S.ERROR,)) == ["e"]
    assert _listed(listed, queued_only=True, statuses=(S.SUCCESS,)) == []  # "b" has no queue


def test_a_listing_pages_in_either_order(listed: Store) -> None:
    assert _listed(listed, limit=2) == ["a", "b"]
    assert _listed(listed, limit=2, offset=2) == ["c", "d"]
    assert _listed(listed, offset=4) == ["e", "f"]
    assert _listed(listed, newest_first=True, limit=3) == ["f", "e", "d"]
    assert _listed(listed, newest_first=True, limit=3, offset=4) == ["b", "a"]


def test_a_listing_reads_payloads_only_when_asked(listed: Store) -> None:
    [full] = listed.list_workflows(WorkflowQuery(workflow_ids=("e",)))
    assert (full.inputs, full.output, full.error) == (b"[]", b"o", b"x")
    [bare] = listed.list_workflows(
        WorkflowQuery(workflow_ids=("e",), with_inputs=False, with_outputs=False)
    )
    assert (bare.inputs, bare.output, bare.error) == (None, None, None)
    assert (bare.status, bare.queue_name, bare.created_at) == (S.ERROR, "r", 50)
    [no_inputs] = listed.list_workflows(WorkflowQuery(workflow_ids=("e",), with_inputs=False))
    assert (no_inputs.inputs, no_inputs.output) == (None, b"o")


def test_a_prefix_matches_literally_whatever_its_characters(store: Store) -> None:
    ids = ["a%b-1", "a%c", "aXb", "b_1", "bx1", "b", "é-1", "é-2", "e-1", "ée", "z\U0010ffff!", "z"]
    for n, workflow_id in enumerate(ids):
        start(store, workflow_id, created_at=n)

    def prefixed(*prefixes: str) -> list[str]:
        return _listed(store, workflow_id_prefixes=prefixes)

    assert prefixed("a%") == ["a%b-1", "a%c"]
    assert prefixed("b_") == ["b_1"]
    assert prefixed("b") == ["b_1", "bx1", "b"]
    assert prefixed("é") == ["é-1", "é-2", "ée"]
    assert prefixed("é-") == ["é-1", "é-2"]
    assert prefixed("z\U0010ffff") == ["z\U0010ffff!"]
    assert prefixed("q") == []
    assert prefixed("a%", "é-", "q") == ["a%b-1", "a%c", "é-1", "é-2"]  # any of them
    assert prefixed() == []
    assert len(prefixed("")) == len(ids)


def test_queue_counts_show_queues_with_unfinished_workflows(listed: Store) -> None:
    start(listed, "g", status=S.ENQUEUED, queue_name="q")
    start(listed, "h", status=S.SUCCESS, queue_name="s")
    assert listed.queue_counts() == [QueueCounts("q", enqueued=2, pending=1)]


# -- cancel ---------------------------------------------------------------------------------------


def _tree(store: Store) -> dict[str, int]:
    """root -> (kid -> grandkid, done-kid), and an unrelated workflow; their tokens."""
    tokens = {"root": start(store, "root"), "other": start(store, "other")}
    for workflow_id, parent, status in (
        ("kid", "root", S.ENQUEUED),
        ("grandkid", "kid", S.PENDING),
        ("done-kid", "root", S.SUCCESS),
    ):
        tokens[workflow_id] = start(
            store, workflow_id, parent_workflow_id=parent, status=status, queue_name="q"
        )
    return tokens


def _status(store: Store, workflow_id: str) -> str:
    row = store.get_workflow(workflow_id)
    assert row is not None
    return row.status


def test_cancel_takes_only_the_workflows_named_unless_children_are_asked_for(
    store: Store,
) -> None:
    tokens = _tree(store)
    start(store, "dead", status=S.MAX_RECOVERY_ATTEMPTS_EXCEEDED)
    cancelled = store.cancel_workflows(("root", "dead", "unknown"), with_children=False)
    assert sorted(cancelled) == ["dead", "root"]
    assert [_status(store, w) for w in ("root", "dead")] == [S.CANCELLED] * 2
    assert [_status(store, w) for w in ("kid", "grandkid")] == [S.ENQUEUED, S.PENDING]
    assert store.record_step(step_row("root", 1, tokens["root"])) == Unrecorded.CANCELLED
    assert store.record_step(step_row("grandkid", 1, tokens["grandkid"])) is None
    # Nothing left to cancel, or nothing known: an empty list either way.
    assert store.cancel_workflows(("root", "done-kid", "unknown"), with_children=False) == []
    assert store.cancel_workflows((), with_children=True) == []


def test_cancel_with_children_takes_a_workflow_and_its_unfinished_descendants(
    store: Store,
) -> None:
    tokens = _tree(store)
    assert sorted(store.cancel_workflows(("root",), with_children=True)) == [
        "grandkid", "kid", "root",
    ]  # fmt: skip
    assert [_status(store, w) for w in ("root", "kid", "grandkid")] == [S.CANCELLED] * 3
    assert _status(store, "done-kid") == S.SUCCESS
    assert _status(store, "other") == S.PENDING
    assert store.record_step(step_row("grandkid", 1, tokens["grandkid"])) == Unrecorded.CANCELLED
    assert store.cancel_workflows(("root",), with_children=True) == []


# -- resume and requeue ---------------------------------------------------------------------------


def test_resume_gives_a_stopped_workflow_to_this_process_under_a_new_token(store: Store) -> None:
    old = start(
        store, "w", status=S.ENQUEUED, queue_name="q", recovery_attempts=4,
        workflow_timeout_ms=1_000, workflow_deadline_epoch_ms=5_000,
    )  # fmt: skip
    assert store.record_step(step_row("w", 0, old)) == Unrecorded.LOST  # not running: no owner
    new = new_owner_token()
    resumed = store.resume_workflow("w", executor_id="ex2", instance_id="i2", token=new)
    assert resumed is not None
    assert (resumed.status, resumed.owner_token, resumed.recovery_attempts) == (S.PENDING, new, 1)
    assert (resumed.executor_id, resumed.instance_id) == ("ex2", "i2")
    assert (resumed.queue_name, resumed.workflow_deadline_epoch_ms) == (None, None)
    assert store.get_workflow("w") == resumed
    assert store.record_step(step_row("w", 0, new)) is None
    # A retry of the same resume finds it done; a later resume fences this execution off.
    again = store.resume_workflow("w", executor_id="ex2", instance_id="i2", token=new)
    assert again is not None
    assert again.owner_token == new
    newer = store.resume_workflow("w", executor_id="ex3", instance_id="i3", token=new_owner_token())
    assert newer is not None
    assert store.record_step(step_row("w", 1, new)) == Unrecorded.LOST


@pytest.mark.parametrize("status", [S.CANCELLED, S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, S.PENDING])
def test_resume_takes_a_workflow_from_any_unfinished_or_stopped_status(
    store: Store, status: str
) -> None:
    start(store, "w", status=status)
    resumed = store.resume_workflow("w", executor_id="e", instance_id="i", token=new_owner_token())
    assert resumed is not None
    assert resumed.status == S.PENDING


def test_resume_and_requeue_leave_finished_and_unknown_workflows_alone(store: Store) -> None:
    start(store, "done", status=S.SUCCESS, output=b"1")
    for workflow_id in ("done", "unknown"):
        token = new_owner_token()
        assert (
            store.resume_workflow(workflow_id, executor_id="e", instance_id="i", token=token)
            is None
        )
        assert not store.requeue_workflow(workflow_id, queue_name="q", token=token)
    row = store.get_workflow("done")
    assert row is not None
    assert (row.status, row.output) == (S.SUCCESS, b"1")


def test_requeue_puts_a_workflow_on_a_queue_as_a_plain_entry(store: Store) -> None:
    old = start(
        store, "w", recovery_attempts=3, queue_name="old", priority=5, deduplication_id="d",
        queue_partition_key="pk", not_before_epoch_ms=9, dequeued_at_epoch_ms=8,
        workflow_timeout_ms=1_000, workflow_deadline_epoch_ms=5_000,
    )  # fmt: skip
    new = new_owner_token()
    assert store.requeue_workflow("w", queue_name="q", token=new)
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.queue_name, row.owner_token, row.recovery_attempts) == (
        S.ENQUEUED, "q", new, 0,
    )  # fmt: skip
    assert (row.priority, row.queue_partition_key, row.deduplication_id) == (0, None, None)
    assert (row.not_before_epoch_ms, row.dequeued_at_epoch_ms) == (None, None)
    assert (row.workflow_timeout_ms, row.workflow_deadline_epoch_ms) == (None, None)
    assert store.record_step(step_row("w", 0, old)) == Unrecorded.LOST  # its execution is fenced
    assert store.requeue_workflow("w", queue_name="q", token=new)  # a retry finds it done


# -- fork -----------------------------------------------------------------------------------------


def test_a_fork_copies_the_steps_before_its_start(store: Store) -> None:
    token = start(store, "src")
    for position in range(4):
        store.record_step(step_row("src", position, token, output=b"%d" % position))
    fork = workflow_row("fork", forked_from="src")
    assert store.fork_workflow(fork, source_id="src", start_step=2)
    assert store.get_workflow("fork") == fork
    assert step_outputs(store, "fork") == [(0, b"0"), (1, b"1")]
    assert store.record_step(step_row("fork", 2, fork.owner_token)) is None
    # This same fork again (a lost acknowledgement): done, nothing copied twice.
    assert store.fork_workflow(fork, source_id="src", start_step=2)
    assert step_outputs(store, "fork") == [(0, b"0"), (1, b"1"), (2, b"1")]
    # Another fork to the same ID is refused and changes nothing.
    other = workflow_row("fork", forked_from="src", name="other")
    assert not store.fork_workflow(other, source_id="src", start_step=4)
    assert store.get_workflow("fork") == fork
    assert len(store.load_steps("fork")) == 3
    assert _row(store, "src").was_forked_from
    assert not _row(store, "fork").was_forked_from


def test_a_fork_can_replace_the_children_its_copied_steps_started(store: Store) -> None:
    token = start(store, "src")
    for position, child in ((1, "kid-a"), (2, "kid-b"), (3, None)):
        store.record_step(step_row("src", position, token, child=child))
    fork = workflow_row("fork", forked_from="src")
    swaps = (("kid-a", "new-a"), ("nobody", "new-x"))
    assert store.fork_workflow(fork, source_id="src", start_step=4, replacement_children=swaps)
    children = [(s.function_id, s.child_workflow_id) for s in store.load_steps("fork")]
    assert children == [(1, "new-a"), (2, "kid-b"), (3, None)]
    assert [s.child_workflow_id for s in store.load_steps("src")] == ["kid-a", "kid-b", None]


# -- steps and delays -----------------------------------------------------------------------------


def test_a_step_listing_pages_and_skips_payloads_when_asked(store: Store) -> None:
    token = start(store, "w")
    for position in range(1, 6):
        store.record_step(step_row("w", position, token, output=b"%d" % position))
    assert [s.function_id for s in store.list_steps("w")] == [1, 2, 3, 4, 5]
    assert [s.output for s in store.list_steps("w", limit=2)] == [b"1", b"2"]
    assert [s.function_id for s in store.list_steps("w", limit=2, offset=3)] == [4, 5]
    assert [s.function_id for s in store.list_steps("w", offset=4)] == [5]
    bare = store.list_steps("w", with_outputs=False, limit=1)
    assert [(s.function_name, s.output, s.error) for s in bare] == [("s", None, None)]
    assert store.list_steps("unknown") == []


def test_a_delay_changes_the_start_time_of_a_waiting_workflow_only(store: Store) -> None:
    start(store, "waiting", status=S.ENQUEUED, queue_name="q", not_before_epoch_ms=2**62)
    start(store, "running", queue_name="q")
    start(store, "done", status=S.SUCCESS, queue_name="q")
    assert store.delay_workflow("waiting", not_before_epoch_ms=5) == "q"
    assert _row(store, "waiting").not_before_epoch_ms == 5
    assert _listed(store, statuses=(S.ENQUEUED,)) == ["waiting"]
    for workflow_id in ("running", "done", "unknown"):
        assert store.delay_workflow(workflow_id, not_before_epoch_ms=5) is None
    assert _row(store, "running").not_before_epoch_ms is None


# -- delete ---------------------------------------------------------------------------------------


def _with_owned_rows(
    store: Store, workflow_id: str, *, status: str = S.PENDING, **fields: Any
) -> None:
    """A workflow (``status`` in the end) with a row in every table a workflow owns."""
    token = start(store, workflow_id, **fields)
    assert store.record_step(step_row(workflow_id, 0, token)) is None
    store.set_event(workflow_id, "k", b"1", "json")
    store.write_stream(workflow_id, "s", b"1", "json", closed=False)
    send(store, f"to-{workflow_id}", b"1", to=workflow_id)
    store.watch_result(workflow_id, "waiter", watching=True)
    assert store.receive_message(workflow_id, "other", recv_step(workflow_id, 1, token)) is None
    run_sql(
        store.url,
        "UPDATE {p}workflow_status SET status = :s WHERE workflow_id = :w",
        s=status,
        w=workflow_id,
    )


def _owned_rows(store: Store, workflow_id: str) -> list[int]:
    counts = []
    for table, column in (
        ("operation_outputs", "workflow_id"),
        ("workflow_events", "workflow_id"),
        ("streams", "workflow_id"),
        ("notifications", "destination_id"),
        ("result_waiters", "workflow_id"),
        ("recv_waiters", "workflow_id"),
    ):
        rows = run_sql(
            store.url, f"SELECT COUNT(*) FROM {{p}}{table} WHERE {column} = :w", w=workflow_id
        )
        counts.append(int(rows[0][0]))
    return counts


def test_delete_takes_workflows_with_their_rows_and_children_if_asked(store: Store) -> None:
    for workflow_id, parent in (("a", None), ("a-kid", "a"), ("a-grandkid", "a-kid"), ("b", None)):
        _with_owned_rows(store, workflow_id, parent_workflow_id=parent)
    assert _owned_rows(store, "a") == [1, 1, 1, 1, 1, 1]
    assert store.delete_workflows(("a",), with_children=False) == ["a"]
    assert store.get_workflow("a") is None
    assert _owned_rows(store, "a") == [0] * 6
    assert store.get_workflow("a-kid") is not None
    assert sorted(store.delete_workflows(("a-kid", "b"), with_children=True)) == [
        "a-grandkid", "a-kid", "b",
    ]  # fmt: skip
    for gone in ("a-kid", "a-grandkid", "b"):
        assert store.get_workflow(gone) is None
        assert _owned_rows(store, gone) == [0] * 6
    assert store.delete_workflows(("unknown",), with_children=True) == []
    assert store.delete_workflows((), with_children=False) == []


def test_garbage_collection_deletes_the_oldest_finished_workflows_only(store: Store) -> None:
    kinds = {
        "old-success": S.SUCCESS, "old-error": S.ERROR, "old-pending": S.PENDING,
        "old-enqueued": S.ENQUEUED, "old-cancelled": S.CANCELLED,
        "old-dead": S.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    }  # fmt: skip
    for n, (workflow_id, status) in enumerate(kinds.items()):
        _with_owned_rows(store, workflow_id, status=status, created_at=10 + n, queue_name="q")
    start(store, "new-success", status=S.SUCCESS, created_at=100)
    assert store.delete_finished_batch(created_before_ms=100, limit=2) == 2
    assert {r.workflow_id for r in _all(store)} >= {"old-pending", "old-enqueued", "new-success"}
    assert store.get_workflow("old-success") is store.get_workflow("old-error") is None
    assert _owned_rows(store, "old-success") == [0] * 6
    assert store.delete_finished_batch(created_before_ms=100, limit=10) == 2
    assert store.delete_finished_batch(created_before_ms=100, limit=10) == 0
    assert sorted(r.workflow_id for r in _all(store)) == [
        "new-success", "old-enqueued", "old-pending",
    ]  # fmt: skip
    assert _owned_rows(store, "old-pending")[0] == 1


def _all(store: Store) -> list[WorkflowRow]:
    return store.list_workflows(WorkflowQuery())
