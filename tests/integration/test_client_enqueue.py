"""`DBOSClient.enqueue`: a process that runs no workflows puts work on an application's queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from perdure import DBOS, DBOSClient, Queue, SetWorkflowID
from perdure.error import DBOSQueueDeduplicatedError


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_client_enqueues_by_name_and_the_app_runs_it(client: DBOSClient) -> None:
    Queue("orders")

    @DBOS.workflow(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    handle = client.enqueue({"workflow_name": "add", "queue_name": "orders"}, 2, b=3)
    assert handle.get_result() == 5
    status = DBOS.get_workflow_status(handle.get_workflow_id())
    assert status is not None
    assert (status.status, status.queue_name) == ("SUCCESS", "orders")
    # A priority on a queue declared without priority_enabled: honoured, as in DBOS.
    prioritised = client.enqueue(
        {"workflow_name": "add", "queue_name": "orders", "priority": 2}, 1, 1
    )
    assert prioritised.get_result() == 2
    assert prioritised.get_status().priority == 2


def test_client_enqueue_is_idempotent_by_workflow_id(client: DBOSClient) -> None:
    Queue("once")
    runs: list[int] = []

    @DBOS.workflow(name="count")
    def count() -> int:
        runs.append(1)
        return len(runs)

    options = {"workflow_name": "count", "queue_name": "once", "workflow_id": "count-1"}
    first = client.enqueue(options)  # type: ignore[arg-type]
    assert first.get_result() == 1
    with SetWorkflowID("count-1"):
        again = client.enqueue({"workflow_name": "count", "queue_name": "once"})
    assert again.get_result() == 1
    assert runs == [1]


def test_client_enqueue_errors_write_nothing(client: DBOSClient) -> None:
    Queue("dedup")
    gate = threading.Event()

    @DBOS.step()
    def wait_gate() -> None:
        assert gate.wait(20)

    @DBOS.workflow(name="slow")
    def slow() -> str:
        wait_gate()
        return "done"

    options = {"workflow_name": "slow", "queue_name": "dedup", "deduplication_id": "d1"}
    first = client.enqueue(options)  # type: ignore[arg-type]
    with pytest.raises(DBOSQueueDeduplicatedError):
        client.enqueue(options)  # type: ignore[arg-type]
    gate.set()
    assert first.get_result() == "done"
    assert len(DBOS.list_workflows(name="slow")) == 1


def test_client_enqueue_onto_an_undeclared_queue_waits_for_it(
    client: DBOSClient, caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.workflow(name="later")
    def later(x: int) -> int:
        return x + 1

    # As in DBOS: recorded ENQUEUED; it runs once a process declares the queue.
    handle = client.enqueue(
        {"workflow_name": "later", "queue_name": "not-yet", "queue_partition_key": "p"}, 1
    )
    assert "'not-yet' is not defined in this system database yet" in caplog.text
    assert handle.get_status().status == "ENQUEUED"
    DBOS.register_queue("not-yet", partition_concurrency=1)
    assert handle.get_result() == 2
