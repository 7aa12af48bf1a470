"""DBOS's ID policies: ``workflow_id_reuse_policy="reject"`` refuses an ID in use (recorded
for replay inside a workflow), ``duplication_policy="return-existing"`` joins the workflow
holding a deduplication ID; and every `EnqueueOptions` key of DBOSClient honoured or refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from perdure import DBOS, DBOSClient, Queue, SetEnqueueOptions, SetWorkflowID
from perdure.error import (
    DBOSException,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowIDInUseError,
)
from perdure.serialization import WorkflowSerializationFormat
from tests.integration.system_tables import mark_pending, relaunch, step_rows


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_reject_reuse_policy_refuses_an_id_in_use(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def job(n: int) -> int:
        return n

    @DBOS.workflow()
    def parent() -> str:
        outcomes = []
        for child_id in ("taken", "fresh"):
            try:
                with SetWorkflowID(child_id, workflow_id_reuse_policy="reject"):
                    outcomes.append(f"ran {job(2)}")
            except DBOSWorkflowIDInUseError as exc:
                outcomes.append(f"refused {exc.workflow_id}")
        return ", ".join(outcomes)

    with SetWorkflowID("taken"):
        assert job(1) == 1
    with SetWorkflowID("taken"):
        assert job(1) == 1  # the default policy returns the existing outcome
    with (
        SetWorkflowID("taken", workflow_id_reuse_policy="reject"),
        pytest.raises(DBOSWorkflowIDInUseError) as refused,
    ):
        job(1)
    assert refused.value.workflow_id == "taken"
    with SetWorkflowID("parent-1"):
        assert parent() == "refused taken, ran 2"
    rows = [(r.function_id, r.child_workflow_id, r.error is not None)
            for r in step_rows(db_url, "parent-1")]  # fmt: skip
    assert rows[:2] == [(1, None, True), (2, "fresh", False)]
    # A replay meets the recorded refusal and the recorded child, whatever exists by now.
    mark_pending(db_url, "parent-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("parent-1").get_result() == "refused taken, ran 2"


def test_return_existing_joins_the_deduplicated_workflow(dbos: type[DBOS]) -> None:
    queue = Queue("dedup-join")
    release = threading.Event()

    @DBOS.workflow()
    def slow(n: int) -> int:
        release.wait(30)
        return n

    with SetEnqueueOptions(deduplication_id="d-1"):
        first = queue.enqueue(slow, 1)
    with SetEnqueueOptions(deduplication_id="d-1"), pytest.raises(DBOSQueueDeduplicatedError):
        queue.enqueue(slow, 2)
    with SetEnqueueOptions(deduplication_id="d-1", duplication_policy="return-existing"):
        joined = queue.enqueue(slow, 3)
    assert joined.workflow_id == first.workflow_id
    release.set()
    assert joined.get_result() == 1
    with pytest.raises(DBOSException, match="requires a deduplication_id"):
        SetEnqueueOptions(duplication_policy="return-existing")
    with pytest.raises(DBOSException, match="Invalid duplication_policy 'merge'"):
        SetEnqueueOptions(deduplication_id="x", duplication_policy="merge")


def test_client_honours_or_refuses_every_enqueue_option(
    client: DBOSClient, dbos: type[DBOS]
) -> None:
    Queue("opts", partition_queue=True)

    @DBOS.workflow(name="echo")
    def echo(x: str) -> str:
        return x

    base = {"workflow_name": "echo", "queue_name": "opts", "queue_partition_key": "p1"}
    handle = client.enqueue(
        {**base, "workflow_id": "opt-1", "deduplication_id": "dd", "authenticated_user": "ann",
         "serialization_type": WorkflowSerializationFormat.DEFAULT},  # type: ignore[typeddict-item]
        "a",
    )  # fmt: skip
    assert handle.get_result() == "a"
    status = handle.get_status()
    assert (status.authenticated_user, status.queue_name) == ("ann", "opts")

    delayed = client.enqueue({**base, "delay_seconds": 3600}, "later")  # type: ignore[typeddict-item]
    assert delayed.get_status().status == "DELAYED"
    with pytest.raises(DBOSWorkflowIDInUseError):
        client.enqueue({**base, "workflow_id": "opt-1", "workflow_id_reuse_policy": "reject"}, "b")  # type: ignore[typeddict-item]
    tagged = client.enqueue(
        {**base, "attributes": {"team": "x"}, "authenticated_roles": ["ops"]},
        "t",  # type: ignore[typeddict-item]
    )
    assert tagged.get_result() == "t"
    assert (tagged.get_status().attributes, tagged.get_status().authenticated_roles) == (
        {"team": "x"}, ["ops"],
    )  # fmt: skip
    for key, value in (
        ("application_name", "other"),
        ("shard_key", "s"),
        ("max_recovery_attempts", 5),
    ):
        with pytest.raises(DBOSException, match=rf"does not support the option.*{key}"):
            client.enqueue({**base, key: value}, "c")  # type: ignore[typeddict-item]
    with pytest.raises(DBOSException, match=r"unknown option.*priorty"):
        client.enqueue({**base, "priorty": 1}, "c")  # type: ignore[typeddict-item]
    with pytest.raises(DBOSException, match="serialization_type"):
        client.enqueue({**base, "serialization_type": WorkflowSerializationFormat.PORTABLE}, "c")  # type: ignore[typeddict-item]
    assert len(DBOS.list_workflows(queue_name="opts")) == 3  # nothing else was written
