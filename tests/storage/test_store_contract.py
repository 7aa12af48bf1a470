"""The `SystemStore` contract, checked directly against both backends."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import cast

import pytest

from perdure.error import DBOSInitializationError
from perdure.storage import open_store
from perdure.storage.interface import (
    Delivery,
    MessagingStore,
    StepRejected,
    StepRow,
    SystemStore,
    Unrecorded,
    WorkflowRow,
)
from perdure.storage.interface import WorkflowStatusString as S
from perdure.storage.migrations import Migration, pending_migrations


@pytest.fixture
def store(db_url: str) -> Iterator[SystemStore]:
    opened = open_store(db_url)
    opened.migrate()
    yield opened
    opened.close()


def workflow(workflow_id: str, *, instance_id: str = "i1", name: str = "wf") -> WorkflowRow:
    return WorkflowRow(
        workflow_id=workflow_id, status=S.PENDING, name=name, class_name=None, config_name=None,
        inputs=b"[]", output=None, error=None, serialization="json", executor_id="local",
        instance_id=instance_id, app_version="", queue_name=None, authenticated_user=None,
        created_at=1, updated_at=1, recovery_attempts=1, workflow_timeout_ms=None,
        workflow_deadline_epoch_ms=None, parent_workflow_id=None, forked_from=None,
        deduplication_id=None, priority=0,
    )  # fmt: skip


def step(workflow_id: str, position: int, output: bytes = b"1") -> StepRow:
    return StepRow(workflow_id, position, "s", output, None, None, "json", 1, 2)


def test_insert_is_idempotent_and_returns_the_stored_row(store: SystemStore) -> None:
    first = store.insert_workflow(workflow("w"))
    again = store.insert_workflow(workflow("w", name="other"))
    assert first.created
    assert not again.created
    assert again.row.name == "wf"


def test_steps_record_once_and_only_while_pending(store: SystemStore) -> None:
    store.insert_workflow(workflow("w"))
    assert store.record_step(step("w", 0)) is None
    assert store.record_step(step("w", 0, b"2")) == Unrecorded.CONFLICT
    assert store.set_status("w", S.CANCELLED, only_from=(S.PENDING,))
    assert store.record_step(step("w", 1)) == Unrecorded.CANCELLED
    assert [s.output for s in store.load_steps("w")] == [b"1"]


RECV = "DBOS.recv"


def recv_step(workflow_id: str, position: int) -> StepRow:
    return StepRow(workflow_id, position, RECV, None, None, None, "json", 1, 2)


def send(messages: MessagingStore, message_id: str, data: bytes, to: str = "w") -> Delivery:
    return messages.send_message(
        message_id=message_id, destination_id=to, topic="t", message=data,
        serialization="json", recv_step_name=RECV,
    )  # fmt: skip


def test_a_message_is_taken_only_together_with_its_step(store: SystemStore) -> None:
    messages = cast(MessagingStore, store)
    store.insert_workflow(workflow("w"))
    for n in (1, 2):
        assert send(messages, f"m{n}", b"%d" % n) == Delivery("sent")  # nobody waiting: queued
    taken = messages.receive_message("w", "t", recv_step("w", 0))
    assert taken is not None
    assert taken.data == b"1"
    assert [(s.function_id, s.output) for s in store.load_steps("w")] == [(0, b"1")]
    again = messages.receive_message("w", "t", recv_step("w", 0))  # a replay of position 0
    assert again is not None
    assert again.data == b"1"

    assert store.record_step(step("w", 1)) is None  # position 1 holds another kind of step
    with pytest.raises(StepRejected) as overtaken:
        messages.receive_message("w", "t", recv_step("w", 1))
    assert overtaken.value.reason == Unrecorded.CONFLICT
    assert store.set_status("w", S.CANCELLED, only_from=(S.PENDING,))
    with pytest.raises(StepRejected) as cancelled:
        messages.receive_message("w", "t", recv_step("w", 2))
    assert cancelled.value.reason == Unrecorded.CANCELLED
    # Neither refused receive took the second message.
    assert messages.has_message("w", "t")
    assert [s.function_id for s in store.load_steps("w")] == [0, 1]
    assert send(messages, "x", b"x", to="nobody") == Delivery("no_destination")


def test_a_blocked_receiver_is_handed_the_message_as_its_step(store: SystemStore) -> None:
    messages = cast(MessagingStore, store)
    store.insert_workflow(workflow("w"))
    assert messages.receive_message("w", "t", recv_step("w", 0)) is None  # registers at 0
    assert send(messages, "m1", b"1") == Delivery("sent", handed_to=0)
    assert not messages.has_message("w", "t")
    assert [(s.function_id, s.function_name, s.output) for s in store.load_steps("w")] == [
        (0, RECV, b"1")
    ]
    handed = messages.receive_message("w", "t", recv_step("w", 0))  # what the receiver reads
    assert handed is not None
    assert handed.data == b"1"
    assert send(messages, "m1", b"1") == Delivery("duplicate")  # its ID still deduplicates

    # Taken once only: the next message, with the registration used up, is queued.
    assert send(messages, "m2", b"2") == Delivery("sent")
    assert messages.has_message("w", "t")


def test_a_hand_off_never_overtakes_or_loses_a_message(store: SystemStore) -> None:
    messages = cast(MessagingStore, store)
    store.insert_workflow(workflow("w"))

    def receive(position: int) -> bytes | None:
        taken = messages.receive_message("w", "t", recv_step("w", position))
        return taken.data if taken else None

    # A receiver that timed out withdraws first; a sender then queues.
    assert receive(0) is None
    assert messages.stop_waiting("w", "t", 0)
    assert not messages.stop_waiting("w", "t", 0)
    assert send(messages, "m0", b"0") == Delivery("sent")
    assert receive(0) == b"0"

    # Registered, then cancelled: m1 is queued; once resumed, m2 may not overtake it.
    assert receive(1) is None
    assert store.set_status("w", S.CANCELLED, only_from=(S.PENDING,))
    assert send(messages, "m1", b"1") == Delivery("sent")
    assert store.set_status("w", S.PENDING, only_from=(S.CANCELLED,))
    assert send(messages, "m2", b"2") == Delivery("sent")
    assert [receive(1), receive(2)] == [b"1", b"2"]

    # A stale registration (its position recorded since) leaves the message queued, not lost.
    assert receive(3) is None
    assert store.record_step(recv_step("w", 3)) is None
    assert send(messages, "m3", b"3") == Delivery("sent")
    assert receive(4) == b"3"


def test_a_message_from_a_workflow_is_sent_only_with_its_step(store: SystemStore) -> None:
    messages = cast(MessagingStore, store)
    store.insert_workflow(workflow("sender"))
    store.insert_workflow(workflow("w"))
    assert messages.receive_message("w", "t", recv_step("w", 0)) is None  # blocked at 0

    def send_from(position: int, message_id: str) -> Delivery:
        return messages.send_message(
            message_id=message_id, destination_id="w", topic="t", message=b"1",
            serialization="json", recv_step_name=RECV, step=step("sender", position),
        )  # fmt: skip

    assert send_from(0, "sender-0") == Delivery("sent", handed_to=0)
    with pytest.raises(StepRejected) as overtaken:  # the sender's position 0 is taken
        send_from(0, "sender-0-again")
    assert overtaken.value.reason == Unrecorded.CONFLICT
    assert store.set_status("sender", S.CANCELLED, only_from=(S.PENDING,))
    with pytest.raises(StepRejected) as cancelled:
        send_from(1, "sender-1")
    assert cancelled.value.reason == Unrecorded.CANCELLED
    # Neither refused send delivered anything.
    assert not messages.has_message("w", "t")
    assert [s.function_id for s in store.load_steps("sender")] == [0]
    assert [s.function_id for s in store.load_steps("w")] == [0]


def test_an_event_or_stream_value_is_kept_only_with_its_step(store: SystemStore) -> None:
    messages = cast(MessagingStore, store)
    store.insert_workflow(workflow("w"))
    messages.set_event("w", "k", b"1", "json", step=step("w", 0))
    messages.write_stream("w", "s", b"a", "json", closed=False, step=step("w", 1))
    refused = [
        lambda: messages.set_event("w", "k", b"2", "json", step=step("w", 0)),
        lambda: messages.write_stream("w", "s", b"b", "json", closed=False, step=step("w", 1)),
    ]
    for attempt in refused:  # their positions are recorded already
        with pytest.raises(StepRejected) as overtaken:
            attempt()
        assert overtaken.value.reason == Unrecorded.CONFLICT
    assert store.set_status("w", S.CANCELLED, only_from=(S.PENDING,))
    cancelled = [
        lambda: messages.set_event("w", "k", b"3", "json", step=step("w", 2)),
        lambda: messages.write_stream("w", "s", b"c", "json", closed=True, step=step("w", 3)),
    ]
    for attempt in cancelled:
        with pytest.raises(StepRejected) as stopped:
            attempt()
        assert stopped.value.reason == Unrecorded.CANCELLED

    event = messages.get_event("w", "k")
    assert event is not None
    assert event.data == b"1"
    entries = messages.read_stream("w", "s", 0)
    assert [(e.offset, e.value.data, e.closed) for e in entries] == [(0, b"a", False)]
    assert [s.function_id for s in store.load_steps("w")] == [0, 1]


def test_a_batch_of_steps_is_written_in_one_go_each_only_where_allowed(
    store: SystemStore,
) -> None:
    for workflow_id in ("a", "b", "gone"):
        store.insert_workflow(workflow(workflow_id))
    assert store.record_step(step("a", 0)) is None
    assert store.set_status("gone", S.CANCELLED, only_from=(S.PENDING,))
    batch = [step("a", 0, b"again"), step("a", 1), step("b", 0), step("gone", 0), step("x", 0)]
    # The group commit's batch write (what concurrent workflows' checkpoints go through).
    written = store._write_steps(batch)  # type: ignore[attr-defined]
    assert written == [False, True, True, False, False]
    assert [(s.function_id, s.output) for s in store.load_steps("a")] == [(0, b"1"), (1, b"1")]
    assert [s.function_id for s in store.load_steps("b")] == [0]
    assert store.load_steps("gone") == []


def test_complete_only_a_pending_workflow(store: SystemStore) -> None:
    store.insert_workflow(workflow("w"))
    assert store.complete_workflow("w", status=S.SUCCESS, output=b"7", error=None)
    assert not store.complete_workflow("w", status=S.ERROR, output=None, error=b"x")
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.output) == (S.SUCCESS, b"7")


def test_child_insert_links_parent_step_atomically(store: SystemStore) -> None:
    store.insert_workflow(workflow("p"))
    link = StepRow("p", 0, "child", None, None, "p-0", "json", 1, 1)
    assert store.insert_child_workflow(workflow("p-0"), link).created
    assert store.get_step("p", 0) == link
    with pytest.raises(StepRejected) as taken:
        store.insert_child_workflow(workflow("p-0b"), link)
    assert taken.value.reason == Unrecorded.CONFLICT
    assert store.get_workflow("p-0b") is None  # rolled back with the failed link
    assert store.set_status("p", S.CANCELLED, only_from=(S.PENDING,))
    later = StepRow("p", 1, "child", None, None, "p-1", "json", 1, 1)
    with pytest.raises(StepRejected) as cancelled:
        store.insert_child_workflow(workflow("p-1"), later)
    assert cancelled.value.reason == Unrecorded.CANCELLED
    assert store.get_workflow("p-1") is None  # a cancelled parent starts no child


def test_recovery_claim_is_compare_and_set(store: SystemStore) -> None:
    store.insert_workflow(workflow("w", instance_id="dead"))
    assert store.pending_workflows("local", "me") == [("w", "dead")]
    winners: list[WorkflowRow] = []
    barrier = threading.Barrier(4)

    def claim(instance: str) -> None:
        barrier.wait()
        row = store.claim_for_recovery("w", instance, dead_owner="dead", max_recovery_attempts=5)
        if row is not None:
            winners.append(row)

    threads = [threading.Thread(target=claim, args=(f"i{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert winners[0].recovery_attempts == 2


def test_claim_dead_letters_after_max_attempts(store: SystemStore) -> None:
    store.insert_workflow(workflow("w", instance_id="a"))
    first = store.claim_for_recovery("w", "b", dead_owner="a", max_recovery_attempts=1)
    stale = store.claim_for_recovery("w", "c", dead_owner="a", max_recovery_attempts=1)
    second = store.claim_for_recovery("w", "c", dead_owner="b", max_recovery_attempts=1)
    assert stale is None
    assert first is not None
    assert first.status == S.PENDING
    assert second is not None
    assert (second.status, second.recovery_attempts) == (S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, 3)
    assert store.pending_workflows("local", "z") == []


def test_migrate_is_idempotent_and_concurrent_launches_serialise(db_url: str) -> None:
    stores = [open_store(db_url) for _ in range(4)]
    errors: list[BaseException] = []

    def migrate(target: SystemStore) -> None:
        try:
            target.migrate()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    again = open_store(db_url)
    again.migrate()
    assert again.insert_workflow(workflow("w")).created
    again.close()


def test_a_schema_newer_than_the_code_is_refused() -> None:
    known = [Migration(1, "0001_initial.sql", ("SELECT 1",))]
    assert pending_migrations(known, 0, url="x") == known
    assert pending_migrations(known, 1, url="x") == []
    with pytest.raises(DBOSInitializationError, match="newer"):
        pending_migrations(known, 2, url="sqlite:///app.sqlite")


@pytest.mark.single_backend(
    "sqlite", reason="on PostgreSQL Perdure owns a whole schema; only SQLite shares its file"
)
def test_reset_keeps_the_applications_tables_in_a_shared_sqlite_file(sqlite_url: str) -> None:
    """SQLite only: there the application's tables share the file; Postgres has a schema."""
    db_url = sqlite_url
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE greetings (name TEXT)")
        conn.execute("INSERT INTO greetings VALUES ('ann')")
    store = open_store(db_url)
    store.migrate()
    store.reset()
    store.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        tables = {r[0] for r in rows}
        assert tables == {"greetings"}
        assert conn.execute("SELECT name FROM greetings").fetchall() == [("ann",)]
