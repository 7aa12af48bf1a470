"""A write whose commit acknowledgement is lost is retried, and recognises its own commit.

Between the store and PostgreSQL sits a proxy that lets a statement (or a COMMIT) reach the
server, lets the server apply it, then swallows the reply and closes the connection: the
client cannot know whether the write happened. The store retries; the owner token in the row
tells it the write was its own. Nothing is stranded, claimed twice, sent twice or doubled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from psycopg.conninfo import conninfo_to_dict

from perdure import DBOS, SetWorkflowID
from perdure.queues.limits import admissible
from perdure.queues.queue import QueueSpec
from perdure.storage import Store, open_store
from perdure.storage.records import (
    BulkDelivery,
    Delivery,
    Occupancy,
    OutgoingMessage,
    QueueClaim,
    QueueRecord,
    StepRow,
    WorkflowClaim,
    WorkflowRow,
    new_owner_token,
)
from perdure.storage.records import WorkflowStatusString as S
from tests.faults.proxy import DropRule, FaultProxy
from tests.fixtures.app import make_config
from tests.integration.system_tables import run_sql

pytestmark = pytest.mark.single_backend(
    "postgres", reason="a lost acknowledgement needs a network between Perdure and the server; "
    "SQLite commits in-process, where a commit is never in doubt"
)  # fmt: skip

RECV = "DBOS.recv"


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    info = conninfo_to_dict(postgres_url)
    with FaultProxy(str(info.get("host")), int(info.get("port") or 5432)) as started:
        yield started


@pytest.fixture
def store(postgres_url: str, proxy: FaultProxy) -> Iterator[Store]:
    """A store reaching the database through the proxy."""
    opened = open_store(proxy.url_for(postgres_url))
    opened.migrate()
    yield opened
    opened.close()


def workflow(workflow_id: str, **changes: object) -> WorkflowRow:
    row = WorkflowRow(
        workflow_id=workflow_id, status=S.PENDING, name="wf", class_name=None, config_name=None,
        inputs=b"[]", output=None, error=None, serialization="json", executor_id="local",
        instance_id="me", app_version="", queue_name=None, authenticated_user=None,
        created_at=1, updated_at=1, recovery_attempts=1, workflow_timeout_ms=None,
        workflow_deadline_epoch_ms=None, parent_workflow_id=None, forked_from=None,
        deduplication_id=None, priority=0, owner_token=new_owner_token(),
    )  # fmt: skip
    return replace(row, **changes)  # type: ignore[arg-type]


def step(owner: WorkflowRow, position: int, **changes: object) -> StepRow:
    row = StepRow(
        owner.workflow_id, position, "s", b"1", None, None, "json", 1, 2, owner.owner_token
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def count(db_url: str, sql: str) -> int:
    return int(run_sql(db_url, sql)[0][0])


def fired(rule: DropRule) -> None:
    assert rule.fired == 1, f"the fault never happened: {rule.pattern.pattern!r}"


def test_a_start_recognises_its_own_insert(
    store: Store, proxy: FaultProxy, postgres_url: str
) -> None:
    row = workflow("w")
    rule = proxy.drop_reply(r"^INSERT INTO perdure\.workflow_status")
    outcome = store.start_workflow(row)
    fired(rule)
    assert outcome.created  # its own row: the caller runs it (nothing stranded)
    assert outcome.row.owner_token == row.owner_token
    other = store.start_workflow(workflow("w"))  # another start of that ID is not its own
    assert not other.created
    assert count(postgres_url, "SELECT COUNT(*) FROM {p}workflow_status") == 1


def test_a_child_start_recognises_its_own_link_and_child(
    store: Store, proxy: FaultProxy, postgres_url: str
) -> None:
    parent = workflow("p")
    store.start_workflow(parent)
    child = workflow("p-1", parent_workflow_id="p")
    link = step(parent, 1, function_name="child", output=None, child_workflow_id="p-1")
    rule = proxy.drop_reply(r"^WITH prior AS \(SELECT 1 AS one FROM perdure\.operation_outputs")
    outcome = store.start_workflow(child, parent_step=link)
    fired(rule)
    assert outcome.created
    assert [s.child_workflow_id for s in store.load_steps("p")] == ["p-1"]
    assert store.get_workflow("p-1") is not None


def test_a_step_checkpoint_recognises_its_own_insert(store: Store, proxy: FaultProxy) -> None:
    owner = workflow("w")
    store.start_workflow(owner)
    rule = proxy.drop_reply(r"^INSERT INTO perdure\.operation_outputs")
    assert store.record_step(step(owner, 1)) is None  # recorded, by itself
    fired(rule)
    assert len(store.load_steps("w")) == 1


def test_a_completion_recognises_its_own_update(store: Store, proxy: FaultProxy) -> None:
    owner = workflow("w")
    store.start_workflow(owner)
    rule = proxy.drop_reply(r"^UPDATE perdure\.workflow_status SET status = \$1")
    assert store.finish_workflow("w", owner.owner_token, status=S.SUCCESS, output=b"7") is None
    fired(rule)
    finished = store.get_workflow("w")
    assert finished is not None
    assert (finished.status, finished.output) == (S.SUCCESS, b"7")


def test_a_queue_claim_whose_commit_is_lost_claims_nothing_twice(
    store: Store, proxy: FaultProxy, postgres_url: str
) -> None:
    record = QueueRecord("q", None, None, None, None, False, False, 1.0)
    store.save_queue(record)
    for index in range(3):
        store.start_workflow(
            workflow(f"q-{index}", status=S.ENQUEUED, queue_name="q", created_at=index)
        )

    def admit(stored: QueueRecord, occupancy: Occupancy) -> int:
        limits = QueueSpec.from_record(stored).limits
        return admissible(limits, occupancy, now_ms=occupancy.now_ms, batch=100)

    claim = QueueClaim(record, "local", "me", new_owner_token(), ("wf",), "", batch=2)
    rule = proxy.drop_reply(r"^COMMIT")
    claimed = store.claim_queued(claim, admit)
    fired(rule)
    # The retry found what the lost commit claimed, and claimed no second batch.
    assert [r.workflow_id for r in claimed] == ["q-0", "q-1"]
    assert {r.owner_token for r in claimed} == {claim.token}
    rows = run_sql(postgres_url, "SELECT workflow_id, status FROM {p}workflow_status "
                   "ORDER BY workflow_id")  # fmt: skip
    assert [tuple(r) for r in rows] == [("q-0", "PENDING"), ("q-1", "PENDING"), ("q-2", "ENQUEUED")]


def test_a_takeover_claim_recognises_its_own_update(store: Store, proxy: FaultProxy) -> None:
    store.start_workflow(workflow("w", instance_id="dead"))
    claim = WorkflowClaim("local", "me", new_owner_token(), ("wf",), "", from_instances=("dead",))
    rule = proxy.drop_reply(r"^WITH picked AS MATERIALIZED \(SELECT workflow_id FROM perdure")
    claimed = store.claim_workflows(claim)
    fired(rule)
    assert [(r.workflow_id, r.recovery_attempts, r.owner_token) for r in claimed] == [
        ("w", 2, claim.token)  # one attempt counted, however many tries
    ]


def test_a_send_from_a_workflow_is_delivered_once(
    store: Store, proxy: FaultProxy, postgres_url: str
) -> None:
    sender, receiver = workflow("sender"), workflow("receiver")
    store.start_workflow(sender)
    store.start_workflow(receiver)
    rule = proxy.drop_reply(r"^WITH .*DELETE FROM perdure\.recv_waiters")
    delivery = store.send_message(
        message_id="sender-1", destination_id="receiver", topic="t", message=b"1",
        serialization="json", recv_step_name=RECV, step=step(sender, 1, function_name="DBOS.send"),
    )  # fmt: skip
    fired(rule)
    assert delivery == Delivery("sent")
    assert count(postgres_url, "SELECT COUNT(*) FROM {p}notifications") == 1
    assert len(store.load_steps("sender")) == 1


def test_an_event_and_a_stream_value_from_a_workflow_are_kept_once(
    store: Store, proxy: FaultProxy
) -> None:
    owner = workflow("w")
    store.start_workflow(owner)
    rule = proxy.drop_reply(r"^WITH live AS .*INSERT INTO perdure\.streams", times=1)
    store.write_stream("w", "s", b"a", "json", closed=False, step=step(owner, 1))
    fired(rule)
    rule = proxy.drop_reply(r"^WITH live AS .*INSERT INTO perdure\.workflow_events", times=1)
    store.set_event("w", "k", b"v", "json", step=step(owner, 2))
    fired(rule)
    assert [e.value.data for e in store.read_stream("w", "s", 0)] == [b"a"]  # not appended twice
    assert store.get_events("w")["k"].data == b"v"
    assert [s.function_id for s in store.load_steps("w")] == [1, 2]


def test_a_fork_recognises_its_own_insert(store: Store, proxy: FaultProxy) -> None:
    source = workflow("src")
    store.start_workflow(source)
    assert store.record_step(step(source, 1)) is None
    store.finish_workflow("src", source.owner_token, status=S.SUCCESS)
    fork = workflow("fork", forked_from="src")
    rule = proxy.drop_reply(r"^WITH prior AS \(SELECT 1 AS one FROM perdure\.workflow_status")
    assert store.fork_workflow(fork, source_id="src", start_step=2)  # its own insert
    fired(rule)
    assert [s.function_id for s in store.load_steps("fork")] == [1]  # copied once
    assert not store.fork_workflow(workflow("fork"), source_id="src", start_step=2)


def test_a_resume_and_a_requeue_recognise_their_own_update(store: Store, proxy: FaultProxy) -> None:
    store.start_workflow(workflow("w", status=S.CANCELLED))
    token = new_owner_token()
    rule = proxy.drop_reply(r"^UPDATE perdure\.workflow_status SET status = 'PENDING'")
    resumed = store.resume_workflow("w", executor_id="local", instance_id="me", token=token)
    fired(rule)
    assert resumed is not None
    assert (resumed.status, resumed.owner_token) == (S.PENDING, token)
    store.start_workflow(workflow("x", status=S.CANCELLED))
    token = new_owner_token()
    rule = proxy.drop_reply(r"^UPDATE perdure\.workflow_status SET status = 'ENQUEUED'")
    assert store.requeue_workflow("x", queue_name="_perdure_internal", token=token)
    fired(rule)


def test_a_workflow_whose_every_write_loses_an_acknowledgement_finishes_once(
    postgres_url: str, proxy: FaultProxy
) -> None:
    """End to end: the start, each checkpoint and the completion of one run lose theirs."""
    DBOS(config=make_config(proxy.url_for(postgres_url)))
    DBOS.launch()
    try:
        runs: list[int] = []

        @DBOS.step()
        def work(n: int) -> int:
            runs.append(n)
            return n

        @DBOS.workflow()
        def flow() -> int:
            return work(1) + work(2)

        rules = [
            proxy.drop_reply(r"^INSERT INTO perdure\.workflow_status"),
            proxy.drop_reply(r"^INSERT INTO perdure\.operation_outputs", times=2),
            proxy.drop_reply(r"^UPDATE perdure\.workflow_status SET status = \$1"),
        ]
        with SetWorkflowID("end-to-end"):
            handle = DBOS.start_workflow(flow)
        assert handle.get_result() == 3
        assert [rule.fired for rule in rules] == [1, 2, 1]
        assert runs == [1, 2]  # each step ran once
        status = DBOS.get_workflow_status("end-to-end")
        assert status is not None
        assert (status.status, status.recovery_attempts) == ("SUCCESS", 1)
    finally:
        DBOS.destroy(destroy_registry=True)


def test_a_bulk_send_from_a_workflow_whose_commit_is_lost_is_delivered_once(
    store: Store, proxy: FaultProxy, postgres_url: str
) -> None:
    sender = workflow("sender")
    store.start_workflow(sender)
    store.start_workflow(workflow("receiver"))
    messages = [OutgoingMessage(f"sender-1.{n}", "receiver", "t", b"1", "json") for n in (0, 1)]
    rule = proxy.drop_reply(r"^COMMIT")
    delivery = store.send_messages(messages, step=step(sender, 1, function_name="DBOS.send_bulk"))
    fired(rule)
    assert delivery == BulkDelivery()  # the retry found its own commit: sent by that attempt
    assert count(postgres_url, "SELECT COUNT(*) FROM {p}notifications") == 2
    assert len(store.load_steps("sender")) == 1


def test_a_rewind_whose_commit_is_lost_is_recognised_by_its_token(
    store: Store, proxy: FaultProxy
) -> None:
    owner = workflow("w")
    store.start_workflow(owner)
    for position in (1, 2):
        assert store.record_step(step(owner, position)) is None
    assert store.finish_workflow("w", owner.owner_token, status=S.SUCCESS) is None
    token = new_owner_token()
    rule = proxy.drop_reply(r"^COMMIT")
    found = store.rewind_workflow("w", start_step=2, queue_name="q", token=token)
    fired(rule)
    assert found.rewound  # the retry found its own token, not a workflow already ENQUEUED
    assert [s.function_id for s in store.load_steps("w")] == [1]
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.owner_token) == (S.ENQUEUED, token)
