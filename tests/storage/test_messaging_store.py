"""Messages (FIFO per topic, handed off to blocked receivers), events and streams."""

from __future__ import annotations

import threading

import pytest

from perdure.storage import Store, open_store
from perdure.storage.records import (
    Delivery,
    HandedMessage,
    Payload,
    StreamEntry,
    new_owner_token,
)
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import (
    RECV,
    recv_step,
    send,
    start,
    step_row,
    take_over,
)


def _payload(data: bytes) -> Payload:
    return Payload(data, "json")


# -- queued messages ------------------------------------------------------------------------------


def test_a_queued_message_is_taken_only_together_with_its_step(store: Store) -> None:
    token = start(store, "w")
    for n in (1, 2):
        assert send(store, f"m{n}", b"%d" % n) == Delivery("sent")  # nobody waits: queued
    assert store.receive_message("w", "t", recv_step("w", 0, token)) == _payload(b"1")
    [taken] = store.load_steps("w")
    assert (taken.function_id, taken.function_name, taken.output) == (0, RECV, b"1")
    assert taken.owner_token == token
    # A replay of position 0 reads what it took; the next position takes the next message.
    assert store.receive_message("w", "t", recv_step("w", 0, token)) == _payload(b"1")
    assert store.receive_message("w", "t", recv_step("w", 1, token)) == _payload(b"2")
    # With nothing queued the receiver waits: nothing is recorded at its position.
    assert store.receive_message("w", "t", recv_step("w", 2, token)) is None
    assert [s.function_id for s in store.load_steps("w")] == [0, 1]


def test_messages_wait_per_destination_and_topic(store: Store) -> None:
    token = start(store, "w")
    start(store, "other")
    assert send(store, "none", b"n", topic=None) == Delivery("sent")
    assert send(store, "u", b"u", topic="u") == Delivery("sent")
    assert send(store, "elsewhere", b"x", to="other") == Delivery("sent")
    assert store.receive_message("w", "t", recv_step("w", 0, token)) is None
    assert store.receive_message("w", None, recv_step("w", 1, token)) == _payload(b"n")
    assert store.receive_message("w", "u", recv_step("w", 2, token)) == _payload(b"u")


def test_a_message_is_sent_once_per_id_and_only_to_a_known_workflow(store: Store) -> None:
    token = start(store, "w")
    start(store, "other")
    assert send(store, "m", b"1") == Delivery("sent")
    assert send(store, "m", b"2") == Delivery("duplicate")
    assert send(store, "m", b"3", to="other") == Delivery("duplicate")  # IDs are global
    assert send(store, "x", b"x", to="nobody") == Delivery("no_destination")
    assert store.receive_message("w", "t", recv_step("w", 0, token)) == _payload(b"1")
    assert store.receive_message("w", "t", recv_step("w", 1, token)) is None


# -- hand-off to a blocked receiver --------------------------------------------------------------


def test_a_blocked_receiver_is_handed_the_message_as_its_step(store: Store) -> None:
    token = start(store, "w")
    assert store.receive_message("w", "t", recv_step("w", 0, token)) is None  # registers at 0
    assert send(store, "m1", b"1") == Delivery("sent", handed_to=0)
    [handed] = store.load_steps("w")
    assert (handed.function_id, handed.function_name, handed.output) == (0, RECV, b"1")
    assert handed.owner_token == token
    # What the receiver reads back (if it did not get the hand-off's wake-up).
    assert store.receive_message("w", "t", recv_step("w", 0, token)) == _payload(b"1")
    assert send(store, "m1", b"1") == Delivery("duplicate")  # its ID still deduplicates
    # The registration is used up: the next message is queued for the next position.
    assert send(store, "m2", b"2") == Delivery("sent")
    assert store.receive_message("w", "t", recv_step("w", 1, token)) == _payload(b"2")


def test_a_hand_off_never_overtakes_or_loses_a_message(store: Store) -> None:
    token = start(store, "w")

    def receive(position: int, owner: int) -> bytes | None:
        taken = store.receive_message("w", "t", recv_step("w", position, owner))
        return taken.data if taken else None

    # A receiver that timed out withdraws first; a sender then queues.
    assert receive(0, token) is None
    store.stop_waiting("w", "t", 0)
    assert send(store, "m0", b"0") == Delivery("sent")
    assert store.load_steps("w", position=0) == []
    assert receive(0, token) == b"0"

    # Registered, then cancelled: m1 is queued; once resumed, m2 may not overtake it.
    assert receive(1, token) is None
    store.cancel_workflows(("w",), with_children=False)
    assert send(store, "m1", b"1") == Delivery("sent")
    resumed = store.resume_workflow(
        "w", executor_id="local", instance_id="i1", token=new_owner_token()
    )
    assert resumed is not None
    token = resumed.owner_token
    assert send(store, "m2", b"2") == Delivery("sent")
    assert [receive(1, token), receive(2, token)] == [b"1", b"2"]

    # A stale registration (its position recorded since) leaves the message queued, not lost.
    assert receive(3, token) is None
    assert store.record_step(recv_step("w", 3, token)) is None
    assert send(store, "m3", b"3") == Delivery("sent")
    assert receive(4, token) == b"3"


def test_a_sender_hands_off_only_to_a_receiver_of_the_current_owner(store: Store) -> None:
    old = start(store, "w")
    assert store.receive_message("w", "t", recv_step("w", 0, old)) is None  # registers at 0
    current = take_over(store, "w", old)
    # The registration was left by an execution that lost the workflow: the message waits.
    assert send(store, "m", b"1") == Delivery("sent")
    assert store.load_steps("w") == []
    assert store.receive_message("w", "t", recv_step("w", 0, current)) == _payload(b"1")
    [step] = store.load_steps("w")
    assert step.owner_token == current


def test_a_hand_off_racing_the_receivers_own_read_delivers_the_message_once(db_url: str) -> None:
    receiver, sender = open_store(db_url), open_store(db_url)
    receiver.migrate()
    tokens = {f"w{n}": start(receiver, f"w{n}") for n in range(20)}
    for workflow_id, token in tokens.items():
        assert receiver.receive_message(workflow_id, "t", recv_step(workflow_id, 0, token)) is None
    deliveries: list[Delivery] = []

    def send_all() -> None:
        for workflow_id in tokens:
            deliveries.append(
                send(sender, f"m-{workflow_id}", workflow_id.encode(), to=workflow_id)
            )

    def poll_all() -> None:  # the receiver looks again, as a wake-up or its polling makes it
        for workflow_id, token in tokens.items():
            receiver.receive_message(workflow_id, "t", recv_step(workflow_id, 0, token))

    threads = [threading.Thread(target=send_all), threading.Thread(target=poll_all)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {d.outcome for d in deliveries} == {"sent"}
    assert len(deliveries) == len(tokens)
    for workflow_id, token in tokens.items():
        got = receiver.receive_message(workflow_id, "t", recv_step(workflow_id, 0, token))
        assert got == _payload(workflow_id.encode())
        assert receiver.receive_message(workflow_id, "t", recv_step(workflow_id, 1, token)) is None
    receiver.close()
    sender.close()


# -- sending from a workflow or a step ------------------------------------------------------------


def test_a_message_from_a_workflow_is_sent_with_the_senders_step(store: Store) -> None:
    sender = start(store, "sender")
    receiver = start(store, "w")
    assert store.receive_message("w", "t", recv_step("w", 0, receiver)) is None
    sending = step_row("sender", 0, sender, name="DBOS.send", output=None)
    delivery = store.send_message(
        message_id="sender-0", destination_id="w", topic="t", message=b"1",
        serialization="json", recv_step_name=RECV, step=sending,
    )  # fmt: skip
    assert delivery == Delivery("sent", handed_to=0)
    assert store.load_steps("sender") == [sending]
    assert send(store, "sender-1", b"2", step=step_row("sender", 1, sender)) == Delivery("sent")
    assert store.receive_message("w", "t", recv_step("w", 1, receiver)) == _payload(b"2")


def test_a_message_from_a_workflow_to_an_unknown_workflow_records_nothing(store: Store) -> None:
    sender = start(store, "sender")
    sending = step_row("sender", 0, sender, name="DBOS.send", output=None)
    assert send(store, "lost", b"1", to="nobody", step=sending) == Delivery("no_destination")
    # No step claims a send that did not happen, so its retry reports the same.
    assert store.load_steps("sender") == []
    assert send(store, "lost", b"1", to="nobody", step=sending) == Delivery("no_destination")
    fence = {"owner_token": sender, "sender_id": "sender"}
    assert send(store, "lost", b"1", to="nobody", **fence) == Delivery("no_destination")
    start(store, "nobody")  # the message ID was never used
    assert send(store, "lost", b"1", to="nobody", step=sending) == Delivery("sent")
    assert store.load_steps("sender") == [sending]


def test_a_message_from_a_step_is_fenced_by_the_enclosing_workflows_token(store: Store) -> None:
    sender = start(store, "sender")
    token = start(store, "w")
    fence = {"owner_token": sender, "sender_id": "sender"}
    assert send(store, "from-step", b"1", **fence) == Delivery("sent")
    assert send(store, "from-step", b"1", **fence) == Delivery("duplicate")  # a retried step
    assert store.load_steps("sender") == []  # the step records itself, not the send
    assert store.receive_message("w", "t", recv_step("w", 0, token)) == _payload(b"1")
    assert store.receive_message("w", "t", recv_step("w", 1, token)) is None


# -- events ---------------------------------------------------------------------------------------


def test_events_keep_the_latest_value_per_key(store: Store) -> None:
    token = start(store, "w")
    store.set_event("w", "a", b"1", "json", step=step_row("w", 0, token))
    store.set_event("w", "b", b"2", "pickle", owner_token=token)
    store.set_event("w", "a", b"3", "json", step=step_row("w", 1, token))
    assert store.get_events("w") == {"a": _payload(b"3"), "b": Payload(b"2", "pickle")}
    assert store.get_events("w", "b") == {"b": Payload(b"2", "pickle")}
    assert store.get_events("w", "missing") == {}
    assert store.get_events("unknown") == {}
    assert [s.function_id for s in store.load_steps("w")] == [0, 1]


def test_an_unfenced_event_is_published_for_any_workflow(store: Store) -> None:
    store.set_event("plain", "k", b"1", "json")
    store.set_event("plain", "k", b"2", "json")
    assert store.get_events("plain") == {"k": _payload(b"2")}


# -- streams --------------------------------------------------------------------------------------


def test_a_stream_appends_in_order_and_reads_from_an_offset(store: Store) -> None:
    token = start(store, "w")
    store.write_stream("w", "s", b"a", "json", closed=False, step=step_row("w", 0, token))
    store.write_stream("w", "s", b"b", "json", closed=False, owner_token=token)
    store.write_stream("w", "other", b"x", "json", closed=False, owner_token=token)
    store.write_stream("w", "s", None, "json", closed=True, step=step_row("w", 1, token))
    assert store.read_stream("w", "s", 0) == [
        StreamEntry(0, _payload(b"a"), closed=False),
        StreamEntry(1, _payload(b"b"), closed=False),
        StreamEntry(2, Payload(None, "json"), closed=True),
    ]
    assert [e.offset for e in store.read_stream("w", "s", 1)] == [1, 2]
    assert store.read_stream("w", "s", 3) == []
    assert store.read_stream("w", "other", 0) == [StreamEntry(0, _payload(b"x"), closed=False)]
    assert store.read_stream("w", "missing", 0) == []
    assert [e.offset for e in store.read_stream("w", "s", 0, limit=2)] == [0, 1]
    assert [e.offset for e in store.read_stream("w", "s", 2, limit=1)] == [2]


def test_concurrent_writers_of_one_stream_get_distinct_offsets(store: Store) -> None:
    token = start(store, "w")
    writers, writes = 4, 10
    barrier = threading.Barrier(writers)

    def write(writer: int) -> None:
        barrier.wait()
        for n in range(writes):
            value = b"%d-%d" % (writer, n)
            store.write_stream("w", "s", value, "json", closed=False, owner_token=token)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    entries = store.read_stream("w", "s", 0)
    assert [e.offset for e in entries] == list(range(writers * writes))
    assert sorted(e.value.data or b"" for e in entries) == sorted(
        b"%d-%d" % (w, n) for w in range(writers) for n in range(writes)
    )


@pytest.mark.single_backend("postgres", reason="only PostgreSQL notifies: SQLite waiters poll")
def test_a_hand_off_notifies_its_message_signed_for_the_receiving_owner(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.migrate()
    notes: list[tuple[str, HandedMessage | None]] = []
    marker = threading.Event()

    def on_note(name: str, handed: HandedMessage | None) -> None:
        notes.append((name, handed))
        if name == "marker":
            marker.set()

    listening = store.listen(on_note, lambda: None)
    try:
        for workflow_id in ("w", "a|b"):  # an ID with the separator in it
            token = start(store, workflow_id)
            assert store.receive_message(workflow_id, "t", recv_step(workflow_id, 0, token)) is None
            assert send(store, f"m-{workflow_id}", b'"hi"', to=workflow_id).handed_to == 0
        long_token = start(store, "long")
        assert store.receive_message("long", "t", recv_step("long", 0, long_token)) is None
        assert send(store, "m-long", b"x" * 5000, to="long").handed_to == 0
        run_sql(postgres_url, "NOTIFY perdure, 'marker'")  # delivered after the rest, in order
        assert marker.wait(30)
        handed = {name: value for name, value in notes if name.startswith("recv|")}
        assert handed == {
            "recv|w|0": HandedMessage(Payload(b'"hi"', "json"), store_token(store, "w")),
            "recv|a|b|0": HandedMessage(Payload(b'"hi"', "json"), store_token(store, "a|b")),
            "recv|long|0": None,  # too long to carry: the receiver reads its step
        }
    finally:
        if listening is not None:
            listening.stop()
        store.close()


def store_token(store: Store, workflow_id: str) -> int:
    row = store.get_workflow(workflow_id)
    assert row is not None
    return row.owner_token
