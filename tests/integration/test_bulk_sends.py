"""`send_bulk`, `send(send_to_forks=True)` and the ``serialization_type`` keyword."""

from __future__ import annotations

import asyncio

import pytest

from perdure import DBOS, SendMessage, SetWorkflowID, WorkflowSerializationFormat
from perdure.error import DBOSException, DBOSNonExistentWorkflowError
from tests.fixtures.app import wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql

QUEUED = "SELECT COUNT(*) FROM {p}notifications"


def test_send_bulk_delivers_every_message_in_order(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def inbox(topic: str | None, count: int) -> list[object]:
        return [DBOS.recv(topic, timeout_seconds=20) for _ in range(count)]

    with SetWorkflowID("a"):
        a = DBOS.start_workflow(inbox, "t", 3)
    with SetWorkflowID("b"):
        b = DBOS.start_workflow(inbox, None, 1)
    DBOS.send_bulk(
        [
            SendMessage("a", 1, "t"),
            SendMessage(destination_id="b", message={"to": "b"}),
            SendMessage("a", 2, topic="t"),
        ]
    )
    DBOS.send("a", 3, "t")  # a later single send does not overtake them
    assert a.get_result() == [1, 2, 3]
    assert b.get_result() == [{"to": "b"}]


def test_send_bulk_to_a_missing_workflow_sends_nothing(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def idle() -> None:
        pass

    with SetWorkflowID("here"):
        idle()
    with pytest.raises(DBOSNonExistentWorkflowError, match="'gone'") as raised:
        DBOS.send_bulk([SendMessage("here", 1), SendMessage("gone", 2)])
    assert raised.value.workflow_id == "gone"
    assert run_sql(db_url, QUEUED)[0][0] == 0


def test_send_bulk_from_a_workflow_is_one_operation_done_once(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow()
    def idle() -> None:
        pass

    @DBOS.workflow()
    def broadcaster() -> str:
        DBOS.send_bulk([SendMessage("x", "hello"), SendMessage("y", "hello")])
        return "done"

    for workflow_id in ("x", "y"):
        with SetWorkflowID(workflow_id):
            idle()
    with SetWorkflowID("broadcaster"):
        assert broadcaster() == "done"
    steps = DBOS.list_workflow_steps("broadcaster")
    assert [s["function_name"] for s in steps] == ["DBOS.send_bulk"]
    mark_pending(db_url, "broadcaster")  # a replay must not send them again
    relaunch(db_url)
    assert DBOS.retrieve_workflow("broadcaster").get_result() == "done"
    assert run_sql(db_url, QUEUED)[0][0] == 2


def test_idempotency_keys_of_a_bulk_send(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def idle() -> None:
        pass

    with SetWorkflowID("dest"):
        idle()
    batch = [SendMessage("dest", 1, idempotency_key="k1"), SendMessage("dest", 2)]
    DBOS.send_bulk(batch)
    DBOS.send_bulk(batch[:1])  # the keyed message again: not delivered twice
    DBOS.send("dest", 1, idempotency_key="k1")  # a single send with the same key neither
    assert run_sql(db_url, QUEUED)[0][0] == 2
    with pytest.raises(DBOSException, match=r"duplicate idempotency keys \('k2'\)"):
        DBOS.send_bulk([SendMessage("dest", 3, idempotency_key="k2")] * 2)
    with pytest.raises(DBOSException, match="list of SendMessage"):
        DBOS.send_bulk([("dest", 4)])  # type: ignore[list-item]
    assert run_sql(db_url, QUEUED)[0][0] == 2
    with SetWorkflowID("attempt"):  # as for send: SetWorkflowID makes the whole bulk idempotent
        DBOS.send_bulk([SendMessage("dest", 5), SendMessage("dest", 6)])
    with SetWorkflowID("attempt"):
        DBOS.send_bulk([SendMessage("dest", 5), SendMessage("dest", 6)])
    assert run_sql(db_url, QUEUED)[0][0] == 4


def test_send_to_forks_reaches_the_destination_and_its_forks(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def listener() -> object:
        return DBOS.recv("t", timeout_seconds=30)

    def waiting(workflow_id: str) -> bool:
        rows = run_sql(
            db_url, "SELECT 1 FROM {p}recv_waiters WHERE workflow_id = :w", w=workflow_id
        )
        return bool(rows)

    with SetWorkflowID("root"):
        root = DBOS.start_workflow(listener)
    wait_until(lambda: waiting("root"), what="the root to wait")
    fork = DBOS.fork_workflow("root", 1)
    wait_until(lambda: waiting(fork.workflow_id), what="the fork to wait")
    with SetWorkflowID("bystander"):
        bystander = DBOS.start_workflow(listener)
    DBOS.send("root", "to all", "t", send_to_forks=True)
    assert root.get_result() == "to all"
    assert fork.get_result() == "to all"
    DBOS.send("bystander", "only me", "t")
    assert bystander.get_result() == "only me"


def test_async_twins_of_send_bulk(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def inbox() -> list[object]:
        return [DBOS.recv(timeout_seconds=20) for _ in range(3)]

    @DBOS.workflow()
    async def sender() -> None:
        await DBOS.send_bulk_async([SendMessage("async-inbox", "from a workflow")])

    async def main() -> None:
        with SetWorkflowID("async-inbox"):
            await DBOS.start_workflow_async(inbox)
        await sender()
        await DBOS.send_bulk_async([SendMessage("async-inbox", "plain")])
        await DBOS.send_async("async-inbox", "forks too", send_to_forks=True)

    asyncio.run(main())
    result = DBOS.retrieve_workflow("async-inbox").get_result()
    assert result == ["from a workflow", "plain", "forks too"]


def test_serialization_type_is_checked_not_ignored(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def publisher(kind: WorkflowSerializationFormat | None) -> None:
        DBOS.set_event("e", 1, serialization_type=kind)
        DBOS.write_stream("s", 1, serialization_type=kind)

    @DBOS.workflow()
    def idle() -> None:
        pass

    with SetWorkflowID("pub"):
        publisher(WorkflowSerializationFormat.DEFAULT)
    assert DBOS.get_event("pub", "e", 1) == 1
    with SetWorkflowID("idle"):
        idle()
    DBOS.send("idle", 1, serialization_type=None)
    portable = WorkflowSerializationFormat.PORTABLE
    with pytest.raises(DBOSException, match=r"workflow 'idle'.*serialization_type"):
        DBOS.send("idle", 1, serialization_type=portable)
    with pytest.raises(DBOSException, match=r"'idle'.*serialization_type"):
        DBOS.send_bulk([SendMessage("idle", 1)], serialization_type=portable)
    with SetWorkflowID("pub-portable"), pytest.raises(DBOSException, match="'pub-portable'"):
        publisher(portable)
