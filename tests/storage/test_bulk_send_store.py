"""Bulk sends (`Store.send_messages`): all or nothing, once per message ID, optionally to forks."""

from __future__ import annotations

import itertools

from perdure.storage import Store
from perdure.storage.records import BulkDelivery, OutgoingMessage, StepRow
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import recv_step, start, step_row, take_over

SEND_BULK = "DBOS.send_bulk"


def _message(message_id: str, to: str, data: bytes, topic: str | None = "t") -> OutgoingMessage:
    return OutgoingMessage(message_id, to, topic, data, "json")


# Positions of the receives that check what was queued: each receive records one.
_positions = itertools.count(100)


def _received(store: Store, workflow_id: str, token: int, topic: str | None = "t") -> list[bytes]:
    """Take everything queued for a workflow on a topic."""
    got: list[bytes] = []
    while True:
        step = recv_step(workflow_id, next(_positions), token)
        taken = store.receive_message(workflow_id, topic, step)
        if taken is None:
            return got
        got.append(taken.data or b"")


def _send_step(workflow_id: str, position: int, token: int) -> StepRow:
    return step_row(workflow_id, position, token, name=SEND_BULK, output=None)


def test_every_message_is_queued_in_order_per_destination_and_topic(store: Store) -> None:
    a, b = start(store, "a"), start(store, "b")
    delivery = store.send_messages(
        [
            _message("1", "a", b"a1"),
            _message("2", "b", b"b1"),
            _message("3", "a", b"a2"),
            _message("4", "a", b"n", topic=None),
        ]
    )
    assert delivery == BulkDelivery(queues=(("a", "t"), ("b", "t"), ("a", None)))
    assert _received(store, "a", a) == [b"a1", b"a2"]
    assert _received(store, "a", a, topic=None) == [b"n"]
    assert _received(store, "b", b) == [b"b1"]


def test_a_missing_destination_sends_nothing_and_is_named(store: Store) -> None:
    a = start(store, "a")
    sender = start(store, "sender")
    messages = [_message("1", "a", b"1"), _message("2", "x", b"2"), _message("3", "y", b"3")]
    assert store.send_messages(messages) == BulkDelivery(missing=("x", "y"))
    # From a workflow the send's step is undone with the rest: a retry reports the same.
    step = _send_step("sender", 1, sender)
    assert store.send_messages(messages, step=step) == BulkDelivery(missing=("x", "y"))
    assert store.load_steps("sender") == []
    assert _received(store, "a", a) == []


def test_each_message_is_sent_once_per_id(store: Store) -> None:
    a = start(store, "a")
    assert store.send_messages([_message("1", "a", b"1")]).queues == (("a", "t"),)
    store.send_messages([_message("1", "a", b"again"), _message("2", "a", b"2")])
    assert _received(store, "a", a) == [b"1", b"2"]


def test_a_send_from_a_workflow_is_recorded_with_its_messages_once(store: Store) -> None:
    a = start(store, "a")
    sender = start(store, "sender")
    messages = [_message("sender-1.0", "a", b"1"), _message("sender-1.1", "a", b"2")]
    step = _send_step("sender", 1, sender)
    assert store.send_messages(messages, step=step).queues == (("a", "t"),)
    assert store.load_steps("sender") == [step]
    # A retry (the acknowledgement was lost) or a replay: nothing more is sent.
    assert store.send_messages(messages, step=step) == BulkDelivery()
    assert _received(store, "a", a) == [b"1", b"2"]
    # An execution that took over finds the position recorded: the send stands as it was.
    current = take_over(store, "sender", sender)
    again = [_message("other-id", "a", b"3")]
    assert store.send_messages(again, step=_send_step("sender", 1, current)) == BulkDelivery()
    assert _received(store, "a", a) == []


def test_a_send_to_forks_reaches_every_workflow_forked_from_the_destination(
    store: Store,
) -> None:
    tokens = {"root": start(store, "root"), "other": start(store, "other")}
    # root <- f1 <- f11, root <- f2; "other" is not a fork of root.
    for fork, source in (("f1", "root"), ("f2", "root"), ("f11", "f1")):
        tokens[fork] = start(store, fork, forked_from=source)
    delivery = store.send_messages([_message("k", "root", b"hi")], to_forks=True)
    assert sorted(delivery.queues) == [(w, "t") for w in ("f1", "f11", "f2", "root")]
    for workflow_id in ("root", "f1", "f2", "f11"):
        assert _received(store, workflow_id, tokens[workflow_id]) == [b"hi"]
    assert _received(store, "other", tokens["other"]) == []
    ids = run_sql(store.url, "SELECT message_id FROM {p}notifications ORDER BY message_id")
    assert [r[0] for r in ids] == ["k", "k>f1", "k>f11", "k>f2"]
    # The copies are idempotent too: sending again delivers nothing new.
    store.send_messages([_message("k", "root", b"hi")], to_forks=True)
    assert _received(store, "f11", tokens["f11"]) == []
    # Without to_forks only the destination gets it.
    store.send_messages([_message("plain", "f1", b"p")])
    assert _received(store, "f1", tokens["f1"]) == [b"p"]
    assert _received(store, "f11", tokens["f11"]) == []


def test_an_empty_send_from_a_workflow_is_still_recorded(store: Store) -> None:
    sender = start(store, "sender")
    step = _send_step("sender", 1, sender)
    assert store.send_messages([], step=step) == BulkDelivery()
    assert store.load_steps("sender") == [step]
