"""Workflows and their steps: start, checkpoint, finish, and claims of PENDING workflows."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace

import pytest

from perdure.error import DBOSQueueDeduplicatedError
from perdure.storage import Store, open_store
from perdure.storage.records import Unrecorded, WorkflowRow, new_owner_token
from perdure.storage.sql import workflows
from perdure.storage.sql_store import SqlStore
from perdure.storage.store import WriteRefused
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import (
    S,
    claim,
    start,
    step_outputs,
    step_row,
    take_over,
    workflow_row,
)

# -- start ----------------------------------------------------------------------------------------


def test_a_started_workflow_is_stored_as_given(store: Store) -> None:
    row = workflow_row(
        "w", class_name="C", config_name="cfg", inputs=b"\x00in", app_version="v1",
        authenticated_user="ann", created_at=1_700_000_000_123, workflow_timeout_ms=5_000,
        workflow_deadline_epoch_ms=1_700_000_005_123, forked_from="src", priority=3,
        queue_partition_key="pk", not_before_epoch_ms=9, dequeued_at_epoch_ms=8,
    )  # fmt: skip
    outcome = store.start_workflow(row)
    assert outcome.created
    assert outcome.row == row
    assert store.get_workflow("w") == row
    assert store.get_workflow("unknown") is None


def test_a_second_start_of_an_id_returns_the_stored_row(store: Store) -> None:
    first = workflow_row("w")
    assert store.start_workflow(first).created
    other = store.start_workflow(workflow_row("w", name="other"))
    assert not other.created  # another execution's start: it finds the first one's row
    assert other.row == first


def test_a_start_retried_by_its_own_execution_reports_it_created(store: Store) -> None:
    row = workflow_row("w")
    assert store.start_workflow(row).created
    again = store.start_workflow(row)  # the same token: its acknowledgement was lost
    assert again.created
    assert again.row == row


def test_a_second_unfinished_workflow_with_a_deduplication_id_is_refused(store: Store) -> None:
    queued = {"status": S.ENQUEUED, "queue_name": "q", "deduplication_id": "d"}
    first = workflow_row("a", **queued)
    assert store.start_workflow(first).created
    assert store.start_workflow(first).created  # its own retry is not a duplicate
    with pytest.raises(DBOSQueueDeduplicatedError):
        store.start_workflow(workflow_row("b", **queued))
    assert store.get_workflow("b") is None
    # Another queue, or once the first has finished, the ID is free again.
    assert store.start_workflow(workflow_row("c", **{**queued, "queue_name": "r"})).created
    store.cancel_workflows(("a",), with_children=False)
    assert store.start_workflow(workflow_row("b", **queued)).created


def test_a_child_starts_with_its_parents_step_or_not_at_all(store: Store) -> None:
    parent = start(store, "p")
    child = workflow_row("p-0", parent_workflow_id="p")
    link = step_row("p", 0, parent, name="child", output=None, child="p-0")
    assert store.start_workflow(child, parent_step=link).created
    assert store.get_workflow("p-0") == child
    assert store.load_steps("p", position=0) == [link]
    # Another child at the recorded position: the parent's step is not its link.
    other = step_row("p", 0, parent, name="child", output=None, child="p-0b")
    with pytest.raises(WriteRefused):
        store.start_workflow(workflow_row("p-0b", parent_workflow_id="p"), parent_step=other)
    assert store.get_workflow("p-0b") is None  # rolled back with the refused link


# -- steps ----------------------------------------------------------------------------------------


def test_steps_are_recorded_once_each_and_loaded_by_position(store: Store) -> None:
    token = start(store, "w")
    for position in (2, 0, 1):
        assert store.record_step(step_row("w", position, token, output=b"%d" % position)) is None
    assert store.record_step(step_row("w", 1, token, output=b"again")) is None  # its own retry
    assert step_outputs(store, "w") == [(0, b"0"), (1, b"1"), (2, b"2")]
    assert store.load_steps("w", position=1) == [step_row("w", 1, token, output=b"1")]
    assert store.load_steps("w", position=9) == []
    assert store.load_steps("unknown") == []


def test_a_step_of_an_unknown_workflow_is_refused_as_lost(store: Store) -> None:
    assert store.record_step(step_row("ghost", 0, new_owner_token())) == Unrecorded.LOST
    assert store.load_steps("ghost") == []


def test_a_batch_of_steps_is_written_in_one_go_each_only_where_allowed(store: Store) -> None:
    a, b, gone, stale = (start(store, w) for w in ("a", "b", "gone", "stale"))
    assert store.record_step(step_row("a", 0, a)) is None
    store.cancel_workflows(("gone",), with_children=False)
    take_over(store, "stale", stale)
    batch = [
        step_row("a", 0, a, output=b"again"),  # recorded already
        step_row("a", 1, a),
        step_row("b", 0, b),
        step_row("gone", 0, gone),  # cancelled
        step_row("stale", 0, stale),  # owned by another execution now
        step_row("x", 0, a),  # unknown
    ]
    assert isinstance(store, SqlStore)
    # The group commit's batch write, which concurrent workflows' checkpoints go through.
    written = workflows.write_steps(store.database, batch)
    assert written == [False, True, True, False, False, False]
    assert step_outputs(store, "a") == [(0, b"1"), (1, b"1")]
    assert step_outputs(store, "b") == [(0, b"1")]
    assert store.load_steps("gone") == store.load_steps("stale") == []


def test_concurrent_checkpoints_of_many_workflows_are_each_recorded(store: Store) -> None:
    tokens = {f"w{n}": start(store, f"w{n}") for n in range(8)}
    stale = take_over(store, "w7", tokens["w7"])
    assert stale != tokens["w7"]
    outcomes: dict[tuple[str, int], str | None] = {}
    barrier = threading.Barrier(len(tokens))

    def checkpoint(workflow_id: str) -> None:
        barrier.wait()
        for position in range(10):
            step = step_row(workflow_id, position, tokens[workflow_id])
            outcomes[(workflow_id, position)] = store.record_step(step)

    threads = [threading.Thread(target=checkpoint, args=(w,)) for w in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(outcomes.values()) == {None: 70, Unrecorded.LOST: 10}
    assert all(len(store.load_steps(f"w{n}")) == 10 for n in range(7))
    assert store.load_steps("w7") == []


# -- finish ---------------------------------------------------------------------------------------


def test_finish_records_the_outcome_once(store: Store) -> None:
    token = start(store, "w")
    assert store.finish_workflow("w", token, status=S.ERROR, error=b"boom") is None
    assert store.finish_workflow("w", token, status=S.ERROR, error=b"boom") is None  # a retry
    # The same owner cannot change what it recorded.
    assert store.finish_workflow("w", token, status=S.SUCCESS, output=b"1") == Unrecorded.LOST
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.output, row.error) == (S.ERROR, None, b"boom")


def test_a_workflow_cancelled_at_its_deadline_is_finished_by_its_owner(store: Store) -> None:
    token = start(store, "w")
    assert store.finish_workflow("w", token, status=S.CANCELLED) is None
    assert store.finish_workflow("w", token, status=S.CANCELLED) is None
    row = store.get_workflow("w")
    assert row is not None
    assert row.status == S.CANCELLED
    assert store.record_step(step_row("w", 0, token)) == Unrecorded.CANCELLED


# -- claims ---------------------------------------------------------------------------------------


def _ids(rows: list[WorkflowRow]) -> list[str]:
    return sorted(r.workflow_id for r in rows)


def test_a_claim_takes_the_pending_workflows_of_dead_instances(store: Store) -> None:
    old = {w: start(store, w, instance_id="dead") for w in ("a", "b")}
    start(store, "c", instance_id="other-dead")
    start(store, "alive", instance_id="alive")
    start(store, "done", instance_id="dead", status=S.SUCCESS)
    start(store, "queued", instance_id="dead", status=S.ENQUEUED, queue_name="q")
    token = new_owner_token()
    claimed = store.claim_workflows(claim(token, from_instances=("dead", "other-dead")))
    assert _ids(claimed) == ["a", "b", "c"]
    for row in claimed:
        assert (row.status, row.instance_id, row.executor_id) == (S.PENDING, "me", "local")
        assert (row.owner_token, row.recovery_attempts) == (token, 2)
        assert store.get_workflow(row.workflow_id) == row
    # The dead owners' executions are fenced off.
    assert store.record_step(step_row("a", 0, old["a"])) == Unrecorded.LOST
    assert store.record_step(step_row("a", 0, token)) is None
    assert store.claim_workflows(claim(new_owner_token(), from_instances=("dead",))) == []


def test_a_claim_takes_only_workflows_this_process_can_run(store: Store) -> None:
    for workflow_id, fields in {
        "mine": {},
        "same-version": {"app_version": "v2"},
        "other-version": {"app_version": "v1"},
        "other-name": {"name": "elsewhere"},
    }.items():
        start(store, workflow_id, instance_id="dead", **fields)
    claimed = store.claim_workflows(
        claim(new_owner_token(), from_instances=("dead",), app_version="v2", names=("wf", "x"))
    )
    assert _ids(claimed) == ["mine", "same-version"]
    # An unversioned workflow takes the version of the process that claims it.
    assert {r.app_version for r in claimed} == {"v2"}
    assert store.claim_workflows(claim(new_owner_token(), from_instances=("dead",), names=())) == []


def test_a_claim_takes_at_most_its_limit_oldest_first(store: Store) -> None:
    for n in range(5):
        start(store, f"w{n}", instance_id="dead", created_at=10 - n)
    first = store.claim_workflows(claim(new_owner_token(), from_instances=("dead",), limit=2))
    assert _ids(first) == ["w3", "w4"]
    rest = store.claim_workflows(claim(new_owner_token(), from_instances=("dead",), limit=10))
    assert _ids(rest) == ["w0", "w1", "w2"]


def test_a_claim_retried_with_its_token_finds_its_rows_without_counting_twice(
    store: Store,
) -> None:
    for n in range(3):
        start(store, f"w{n}", instance_id="dead")
    token = new_owner_token()
    first = store.claim_workflows(claim(token, from_instances=("dead",)))
    again = store.claim_workflows(claim(token, from_instances=("dead",)))
    assert _ids(again) == _ids(first) == ["w0", "w1", "w2"]
    assert {r.recovery_attempts for r in again} == {2}
    assert {r.owner_token for r in again} == {token}


def test_concurrent_claims_give_each_workflow_to_exactly_one_claimant(db_url: str) -> None:
    setup = open_store(db_url)
    setup.migrate()
    for n in range(40):
        start(setup, f"w{n}", instance_id="dead")
    claimants = [open_store(db_url) for _ in range(4)]  # like four processes
    won: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(claimants))

    def take(number: int, claimant: Store) -> None:
        barrier.wait()
        rows: list[WorkflowRow] = []
        for _ in range(10):
            rows += claimant.claim_workflows(
                claim(
                    new_owner_token(), instance_id=f"i{number}", from_instances=("dead",), limit=3
                )
            )
        won[f"i{number}"] = [r.workflow_id for r in rows]

    threads = [threading.Thread(target=take, args=c) for c in enumerate(claimants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for claimant in claimants:
        claimant.close()
    every = [w for ids in won.values() for w in ids]
    assert sorted(every) == sorted(f"w{n}" for n in range(40))  # each one exactly once
    for instance, ids in won.items():
        for workflow_id in ids:
            row = setup.get_workflow(workflow_id)
            assert row is not None
            assert (row.instance_id, row.recovery_attempts) == (instance, 2)
    setup.close()


def test_a_single_workflow_is_claimed_only_from_the_token_expected(store: Store) -> None:
    first = start(store, "w", instance_id="busy")
    new = new_owner_token()
    one = claim(new, workflow_id="w", expected_token=first)
    assert store.claim_workflows(claim(new, workflow_id="w", expected_token=first + 1)) == []
    [row] = store.claim_workflows(one)
    assert (row.owner_token, row.instance_id, row.recovery_attempts) == (new, "me", 2)
    [again] = store.claim_workflows(one)  # retried: found, not counted twice
    assert replace(again, updated_at=row.updated_at) == row
    # Claimed away from the expected token, it cannot be claimed with that token again.
    assert (
        store.claim_workflows(claim(new_owner_token(), workflow_id="w", expected_token=first)) == []
    )
    assert store.record_step(step_row("w", 0, first)) == Unrecorded.LOST
    store.finish_workflow("w", new, status=S.SUCCESS)
    assert (
        store.claim_workflows(claim(new_owner_token(), workflow_id="w", expected_token=new)) == []
    )


# -- result watchers ------------------------------------------------------------------------------


def test_a_result_watcher_is_registered_once_and_withdrawn(store: Store) -> None:
    start(store, "w")
    watchers = "SELECT waiter_id FROM {p}result_waiters WHERE workflow_id = 'w'"
    store.watch_result("w", "waiter-1", watching=True)
    store.watch_result("w", "waiter-1", watching=True)
    store.watch_result("w", "waiter-2", watching=True)
    assert sorted(r[0] for r in run_sql(store.url, watchers)) == ["waiter-1", "waiter-2"]
    store.watch_result("w", "waiter-1", watching=False)
    store.watch_result("w", "waiter-1", watching=False)
    assert [r[0] for r in run_sql(store.url, watchers)] == ["waiter-2"]


@pytest.mark.single_backend("postgres", reason="only PostgreSQL notifies: SQLite waiters poll")
def test_the_end_of_a_watched_workflow_is_notified(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.migrate()
    notes: list[str] = []
    marker = threading.Event()

    def on_note(note: str, handed: object) -> None:
        assert handed is None
        notes.append(note)
        if note == "marker":
            marker.set()

    listening = store.listen(on_note, lambda: None)
    try:
        tokens = {w: start(store, w) for w in ("watched", "withdrawn")}
        for workflow_id in tokens:
            store.watch_result(workflow_id, "waiter", watching=True)
        store.watch_result("withdrawn", "waiter", watching=False)
        for workflow_id, token in tokens.items():
            assert store.finish_workflow(workflow_id, token, status=S.SUCCESS) is None
        run_sql(postgres_url, "NOTIFY perdure, 'marker'")  # delivered after the ends, in order
        assert marker.wait(30)
        assert [n for n in notes if n.startswith("end|")] == ["end|watched|"]
    finally:
        if listening is not None:
            listening.stop()
        store.close()
