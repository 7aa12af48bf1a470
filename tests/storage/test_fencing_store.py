"""Ownership fencing: every write of an execution holds only while its token owns the workflow.

Each write an execution makes is checked against the same story: refused (and changing
nothing) once a claim or a resume gave the workflow a new token, or once it was cancelled;
recognised as its own when the same owner repeats it (a retry after a lost acknowledgement);
and, for a write at a position, leaving standing what an earlier owner recorded there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from perdure.storage import Store
from perdure.storage.records import (
    OutgoingMessage,
    Payload,
    StartOutcome,
    Unrecorded,
    new_owner_token,
)
from tests.storage.store_helpers import (
    S,
    outcome,
    recv_step,
    send,
    snapshot,
    start,
    step_row,
    take_over,
    workflow_row,
)

W = "w"  # the workflow whose execution writes
POSITION = 3


@dataclass(frozen=True)
class Write:
    """One kind of write of workflow ``W``'s execution, at a position, under a token."""

    run: Callable[[Store, int, int], object]  # (store, token, position) -> what it returned
    at_position: bool = True  # recorded as the step at its position
    # What the current owner sees writing a position an earlier owner recorded (None: no
    # error, the earlier record stands); irrelevant when not ``at_position``.
    over_earlier_owner: str | None = None


def _child(store: Store, token: int, position: int) -> StartOutcome:
    child = workflow_row(f"{W}-child-{position}", parent_workflow_id=W, token=7)
    link = step_row(W, position, token, name="child", output=None, child=child.workflow_id)
    return store.start_workflow(child, parent_step=link)


def _receive(store: Store, token: int, position: int) -> object:
    return store.receive_message(W, "t", recv_step(W, position, token))


def _bulk(message_id: str, token: int) -> list[OutgoingMessage]:
    """Two messages of a bulk send to the destination workflow."""
    return [
        OutgoingMessage(f"{message_id}.{n}", "dest", "t", b"%d" % token, "json") for n in (0, 1)
    ]


WRITES = {
    "record_step": Write(
        lambda s, t, p: s.record_step(step_row(W, p, t, output=b"%d" % t)),
        over_earlier_owner=Unrecorded.TAKEN,
    ),
    "finish_workflow": Write(
        lambda s, t, p: s.finish_workflow(W, t, status=S.SUCCESS, output=b"7"), at_position=False
    ),
    "set_event_step": Write(
        lambda s, t, p: s.set_event(W, "k", b"%d" % t, "json", step=step_row(W, p, t))
    ),
    "set_event_token": Write(
        lambda s, t, p: s.set_event(W, "k", b"%d" % t, "json", owner_token=t), at_position=False
    ),
    "write_stream_step": Write(
        lambda s, t, p: s.write_stream(
            W, "s", b"%d" % t, "json", closed=False, step=step_row(W, p, t)
        )
    ),
    "write_stream_token": Write(
        lambda s, t, p: s.write_stream(W, "s", b"%d" % t, "json", closed=False, owner_token=t),
        at_position=False,
    ),
    "send_step": Write(
        lambda s, t, p: send(s, f"{W}-{p}-{t}", b"%d" % t, to="dest", step=step_row(W, p, t))
    ),
    "send_token": Write(
        lambda s, t, p: send(s, f"{W}-{p}", b"%d" % t, to="dest", owner_token=t, sender_id=W),
        at_position=False,
    ),
    "send_messages_step": Write(
        lambda s, t, p: s.send_messages(_bulk(f"{W}-{p}-{t}", t), step=step_row(W, p, t))
    ),
    "send_messages_token": Write(
        lambda s, t, p: s.send_messages(_bulk(f"{W}-{p}", t), owner_token=t, sender_id=W),
        at_position=False,
    ),
    "receive_message": Write(_receive),
    "start_child": Write(_child, over_earlier_owner=Unrecorded.TAKEN),
}
# Writes whose repetition by the same owner is recognised as the same write.
REPEATABLE = [name for name in WRITES if name not in ("set_event_token", "write_stream_token")]


@pytest.fixture
def token(store: Store) -> int:
    """The token of ``W``'s first execution; a destination workflow and two queued messages
    for ``W`` exist (what a receive may take)."""
    first = start(store, W)
    start(store, "dest")
    for n in (1, 2):
        send(store, f"queued-{n}", b"m%d" % n)
    return first


@pytest.mark.parametrize("write", WRITES)
def test_a_write_under_a_token_a_claim_replaced_is_refused_as_lost(
    store: Store, token: int, write: str
) -> None:
    take_over(store, W, token)
    before = snapshot(store.url)
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) == Unrecorded.LOST
    assert snapshot(store.url) == before


@pytest.mark.parametrize("write", WRITES)
def test_a_write_under_a_token_a_resume_replaced_is_refused_as_lost(
    store: Store, token: int, write: str
) -> None:
    new = new_owner_token()
    resumed = store.resume_workflow(W, executor_id="local", instance_id="i2", token=new)
    assert resumed is not None
    assert (resumed.status, resumed.owner_token) == (S.PENDING, new)
    before = snapshot(store.url)
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) == Unrecorded.LOST
    assert snapshot(store.url) == before


@pytest.mark.parametrize("write", WRITES)
def test_a_write_of_a_cancelled_workflow_is_refused_as_cancelled(
    store: Store, token: int, write: str
) -> None:
    assert store.cancel_workflows((W,), with_children=False) == [W]
    before = snapshot(store.url)
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) == Unrecorded.CANCELLED
    assert snapshot(store.url) == before


@pytest.mark.parametrize("write", [w for w in WRITES if w != "finish_workflow"])
def test_a_write_after_the_workflow_finished_is_refused_as_lost(
    store: Store, token: int, write: str
) -> None:
    assert store.finish_workflow(W, token, status=S.SUCCESS, output=b"7") is None
    before = snapshot(store.url)
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) == Unrecorded.LOST
    assert snapshot(store.url) == before


@pytest.mark.parametrize("write", REPEATABLE)
def test_a_write_repeated_by_the_same_owner_is_recognised_and_not_doubled(
    store: Store, token: int, write: str
) -> None:
    before = snapshot(store.url)
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) is None
    written = snapshot(store.url)
    assert written != before  # the first write had its effect
    # A retry after a lost acknowledgement: no error, and nothing happens a second time.
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) is None
    assert snapshot(store.url) == written


@pytest.mark.parametrize("write", [w for w, kind in WRITES.items() if kind.at_position])
def test_a_position_an_earlier_owner_recorded_stands_for_the_current_owner(
    store: Store, token: int, write: str
) -> None:
    assert outcome(lambda: WRITES[write].run(store, token, POSITION)) is None
    current = take_over(store, W, token)
    before = snapshot(store.url)
    expected = WRITES[write].over_earlier_owner
    assert outcome(lambda: WRITES[write].run(store, current, POSITION)) == expected
    assert snapshot(store.url) == before  # no second effect


def test_a_receive_over_an_earlier_owners_receive_replays_its_message(
    store: Store, token: int
) -> None:
    assert _receive(store, token, POSITION) == Payload(b"m1", "json")
    current = take_over(store, W, token)
    # The record stands: the current owner gets what the earlier one took, and m2 stays queued.
    assert _receive(store, current, POSITION) == Payload(b"m1", "json")
    assert _receive(store, current, POSITION + 1) == Payload(b"m2", "json")


def test_a_child_start_repeated_by_its_parent_reports_the_child_created(
    store: Store, token: int
) -> None:
    first = _child(store, token, POSITION)
    again = _child(store, token, POSITION)
    assert again == first
    assert again.created
    [link] = store.load_steps(W, position=POSITION)
    assert (link.child_workflow_id, link.owner_token) == (f"{W}-child-{POSITION}", token)
