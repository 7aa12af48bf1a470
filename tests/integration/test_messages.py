"""Messages between workflows (SPEC §4) on both backends: FIFO per topic, timeouts, idempotency."""

from __future__ import annotations

import threading
import time

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql


def test_messages_arrive_in_order_per_topic_and_are_kept_until_received(
    dbos: type[DBOS],
) -> None:
    gate = threading.Event()

    @DBOS.step()
    def wait_for_gate() -> None:
        assert gate.wait(20)

    @DBOS.workflow()
    def inbox() -> list[object]:
        wait_for_gate()  # messages are sent before the first recv
        return [
            DBOS.recv("a", timeout_seconds=5),
            DBOS.recv("b", timeout_seconds=5),
            DBOS.recv("a", timeout_seconds=5),
            DBOS.recv(timeout_seconds=5),
        ]

    with SetWorkflowID("inbox"):
        handle = DBOS.start_workflow(inbox)
    DBOS.send("inbox", "a1", "a")
    DBOS.send("inbox", "b1", "b")
    DBOS.send("inbox", "a2", "a")
    DBOS.send("inbox", {"no": "topic"})
    gate.set()
    assert handle.get_result() == ["a1", "b1", "a2", {"no": "topic"}]


def test_recv_times_out_with_none(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def lonely() -> object:
        return DBOS.recv("nothing", timeout_seconds=0.3)

    started = time.monotonic()
    assert lonely() is None
    assert 0.25 < time.monotonic() - started < 5


def test_recv_wakes_on_send_without_waiting_for_its_timeout(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def waiter() -> object:
        return DBOS.recv(timeout_seconds=30)

    with SetWorkflowID("waiter"):
        handle = DBOS.start_workflow(waiter)
    started = time.monotonic()
    DBOS.send("waiter", 7)
    assert handle.get_result() == 7
    assert time.monotonic() - started < 5


def test_idempotent_sends_deliver_once(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def collect() -> list[object]:
        first = DBOS.recv(timeout_seconds=5)
        DBOS.set_event("first", first)
        second = DBOS.recv(timeout_seconds=1)
        return [first, second]

    with SetWorkflowID("collector"):
        handle = DBOS.start_workflow(collect)
    DBOS.send("collector", "once", idempotency_key="k1")
    wait_until(lambda: DBOS.get_event("collector", "first", 0) is not None)
    DBOS.send("collector", "once", idempotency_key="k1")  # after the first was received
    assert handle.get_result() == ["once", None]

    with SetWorkflowID("collector-2"):
        second = DBOS.start_workflow(collect)
    for _ in range(2):
        with SetWorkflowID("send-attempt"):
            DBOS.send("collector-2", "via-id")
    assert second.get_result() == ["via-id", None]


def test_send_from_a_workflow_is_exactly_once_across_replay(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def target() -> list[object]:
        return [DBOS.recv(timeout_seconds=10), DBOS.recv(timeout_seconds=0.5)]

    @DBOS.workflow()
    def sender(destination: str) -> str:
        DBOS.send(destination, "from-workflow")
        return "sent"

    with SetWorkflowID("target"):
        handle = DBOS.start_workflow(target)
    with SetWorkflowID("sender"):
        assert sender("target") == "sent"
    mark_pending(db_url, "sender")  # replay the sender: its send must not happen again
    relaunch(db_url)
    assert DBOS.retrieve_workflow("sender").get_result() == "sent"
    assert DBOS.retrieve_workflow("target").get_result() == ["from-workflow", None]
    assert handle.workflow_id == "target"


def test_received_message_is_replayed_not_received_again(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def once() -> object:
        return DBOS.recv(timeout_seconds=10)

    with SetWorkflowID("once"):
        handle = DBOS.start_workflow(once)
    DBOS.send("once", "m1")
    assert handle.get_result() == "m1"
    mark_pending(db_url, "once")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("once").get_result() == "m1"
    unread = "SELECT COUNT(*) FROM {p}notifications WHERE consumed = 0"
    assert run_sql(db_url, unread)[0][0] == 0


def test_recv_outside_a_workflow_and_unknown_destination_are_clear_errors(
    dbos: type[DBOS],
) -> None:
    with pytest.raises(DBOSException, match="inside a workflow"):
        DBOS.recv()
    with pytest.raises(DBOSNonExistentWorkflowError, match="no-such-workflow"):
        DBOS.send("no-such-workflow", "hello")


def test_async_twins(dbos: type[DBOS]) -> None:
    import asyncio  # noqa: PLC0415

    @DBOS.workflow()
    async def echo() -> object:
        message = await DBOS.recv_async(timeout_seconds=10)
        await DBOS.set_event_async("echo", message)
        return message

    async def main() -> object:
        with SetWorkflowID("async-echo"):
            handle = await DBOS.start_workflow_async(echo)
        await DBOS.send_async("async-echo", "ping")
        assert await DBOS.get_event_async("async-echo", "echo", 10) == "ping"
        return await handle.get_result()

    assert asyncio.run(main()) == "ping"


def test_deleting_a_workflow_deletes_its_messages_events_and_streams(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow()
    def owner() -> None:
        DBOS.set_event("k", 1)
        DBOS.write_stream("s", 1)

    with SetWorkflowID("owner"):
        owner()
    DBOS.send("owner", "unread")
    DBOS.delete_workflow("owner")
    for table, column in (
        ("workflow_events", "workflow_id"),
        ("streams", "workflow_id"),
        ("notifications", "destination_id"),
    ):
        count = f"SELECT COUNT(*) FROM {{p}}{table} WHERE {column} = 'owner'"
        assert run_sql(db_url, count)[0][0] == 0, table


def _registered(db_url: str, workflow_id: str) -> bool:
    waiting = "SELECT COUNT(*) FROM {p}recv_waiters WHERE workflow_id = :id"
    return bool(run_sql(db_url, waiting, id=workflow_id)[0][0])


@pytest.mark.parametrize("size", [10, 20_000], ids=["small", "too-long-to-notify"])
def test_a_blocked_receiver_is_handed_the_message_once(
    dbos: type[DBOS], db_url: str, size: int
) -> None:
    @DBOS.workflow()
    def receiver() -> list[object]:
        return [DBOS.recv("t", timeout_seconds=30), DBOS.recv("t", timeout_seconds=0.2)]

    message = "m" * size
    with SetWorkflowID("receiver"):
        handle = DBOS.start_workflow(receiver)
    wait_until(lambda: _registered(db_url, "receiver"), what="recv to block")
    DBOS.send("receiver", message, "t")
    assert handle.get_result() == [message, None]
    steps = DBOS.list_workflow_steps("receiver")  # also the recorded deadlines (DBOS.sleep)
    assert [s["output"] for s in steps if s["function_name"] == "DBOS.recv"] == [message, None]
    unread = "SELECT COUNT(*) FROM {p}notifications WHERE consumed = 0"
    assert run_sql(db_url, unread)[0][0] == 0
    assert not _registered(db_url, "receiver")  # the timed-out recv withdrew


def test_a_send_racing_the_recv_timeout_is_received_exactly_once(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow()
    def racer() -> list[object]:
        return [DBOS.recv("t", timeout_seconds=0.05), DBOS.recv("t", timeout_seconds=0.3)]

    for attempt in range(20):
        workflow_id = f"racer-{attempt}"
        with SetWorkflowID(workflow_id):
            handle = DBOS.start_workflow(racer)
        wait_until(lambda: _registered(db_url, workflow_id), what="recv to block")  # noqa: B023
        time.sleep(attempt * 0.005)  # lands the send before, at and after the first timeout
        DBOS.send(workflow_id, attempt, "t")
        received = handle.get_result()
        assert sorted(received, key=lambda v: v is None) == [attempt, None], received
    unread = "SELECT COUNT(*) FROM {p}notifications WHERE consumed = 0"
    assert run_sql(db_url, unread)[0][0] == 0


def test_a_hand_off_racing_a_re_registration_is_still_received_at_the_timeout(
    dbos: type[DBOS], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race, made deterministic: as the recv times out, a sender hands it a message while
    a check of the receiver (whose snapshot predates the hand-off) registers it again."""
    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store
    withdraw = store.stop_waiting  # type: ignore[attr-defined]

    def hand_off_then_withdraw(workflow_id: str, topic: str, position: int) -> bool:
        delivery = store.send_message(  # type: ignore[attr-defined]
            message_id="late", destination_id=workflow_id, topic=topic, message=b'"late"',
            serialization="json", recv_step_name="DBOS.recv",
        )  # fmt: skip
        assert delivery.handed_to == position
        register = (
            "INSERT INTO {p}recv_waiters (workflow_id, topic, function_id) "
            "VALUES (:id, :topic, :position)"
        )
        run_sql(db_url, register, id=workflow_id, topic=topic, position=position)
        return bool(withdraw(workflow_id, topic, position))  # True: the row was there

    monkeypatch.setattr(store, "stop_waiting", hand_off_then_withdraw)

    @DBOS.workflow()
    def late() -> object:
        return DBOS.recv("t", timeout_seconds=0.1)

    assert late() == "late"
    unread = "SELECT COUNT(*) FROM {p}notifications WHERE consumed = 0"
    assert run_sql(db_url, unread)[0][0] == 0


def test_cancelling_a_blocked_receiver_stops_its_wait_at_once(db_url: str) -> None:
    """The cancellation wakes that receiver's wait, not a poll (polling here: every 60 s)."""
    DBOS(config=make_config(db_url, notification_listener_polling_interval_sec=60))
    DBOS.launch()
    try:

        @DBOS.workflow()
        def receiver() -> object:
            return DBOS.recv("t", timeout_seconds=60)

        with SetWorkflowID("blocked"):
            handle = DBOS.start_workflow(receiver)
        wait_until(lambda: run_sql(db_url, "SELECT 1 FROM {p}recv_waiters"), what="the wait")
        started = time.monotonic()
        DBOS.cancel_workflow("blocked")
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            handle.get_result()
        assert time.monotonic() - started < 5
    finally:
        DBOS.destroy(destroy_registry=True)
