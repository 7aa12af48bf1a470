"""`DBOS.enqueue_workflow_with_options`: enqueue by name from inside the app, as
`DBOSClient.enqueue` does, durably inside a workflow, on both backends."""

from __future__ import annotations

import asyncio
import threading

import pytest

from perdure import (
    DBOS,
    DBOSContextSetAuth,
    EnqueueOptions,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowHandleAsync,
)
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowIDInUseError,
)
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql, workflow_row


def _count(db_url: str, name: str) -> int:
    rows = run_sql(db_url, "SELECT COUNT(*) FROM {p}workflow_status WHERE name = :n", n=name)
    return int(rows[0][0])


def test_enqueue_by_name_runs_a_registered_workflow(dbos: type[DBOS]) -> None:
    Queue("orders")

    @DBOS.workflow(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    handle = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "add", "queue_name": "orders"}, 2, b=3
    )
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_result() == 5
    status = handle.get_status()
    assert (status.name, status.queue_name, status.status) == ("add", "orders", "SUCCESS")
    assert status.parent_workflow_id is None
    named = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "add", "queue_name": "orders", "workflow_id": "add-1"}, 1, 1
    )
    assert (named.workflow_id, named.get_result()) == ("add-1", 2)
    # The ID makes it idempotent; "reject" refuses it instead.
    again = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "add", "queue_name": "orders", "workflow_id": "add-1"}, 7, 7
    )
    assert again.get_result() == 2
    with pytest.raises(DBOSWorkflowIDInUseError):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "add", "queue_name": "orders", "workflow_id": "add-1",
             "workflow_id_reuse_policy": "reject"}, 7, 7,
        )  # fmt: skip
    conflict = r"different function name.* belongs to 'add'"
    with pytest.raises(DBOSConflictingWorkflowError, match=conflict):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "other", "queue_name": "orders", "workflow_id": "add-1"}
        )


def test_app_version_is_left_unset_unless_given(db_url: str) -> None:
    DBOS(config=make_config(db_url, application_version="v2"))
    DBOS.launch()
    try:
        queue = Queue("versions")

        @DBOS.workflow(name="versioned")
        def versioned() -> str:
            return DBOS.application_version

        later = {"workflow_name": "versioned", "queue_name": "versions", "delay_seconds": 3600}
        unset = DBOS.enqueue_workflow_with_options(later)  # type: ignore[arg-type]
        given = DBOS.enqueue_workflow_with_options({**later, "app_version": "v9"})  # type: ignore[typeddict-item]
        with SetEnqueueOptions(delay_seconds=3600):
            by_function = queue.enqueue(versioned)
        assert [
            workflow_row(db_url, h.workflow_id).app_version for h in (unset, given, by_function)
        ] == ["", "v9", "v2"]
        # Unset: run by a process of the latest version (this one), which stamps its own.
        now = DBOS.enqueue_workflow_with_options(
            {"workflow_name": "versioned", "queue_name": "versions"}
        )
        assert now.get_result() == "v2"
        assert now.get_status().app_version == "v2"
    finally:
        DBOS.destroy(destroy_registry=True)


def test_inside_a_workflow_the_enqueue_is_a_child_recorded_once(
    dbos: type[DBOS], db_url: str
) -> None:
    Queue("children")
    child_runs: list[int] = []

    @DBOS.workflow(name="child")
    def child(x: int) -> int:
        child_runs.append(x)
        return x * 10

    @DBOS.workflow(name="parent")
    def parent(x: int) -> int:
        options: EnqueueOptions = {"workflow_name": "child", "queue_name": "children"}
        return int(DBOS.enqueue_workflow_with_options(options, x).get_result()) + 1

    with SetWorkflowID("parent-1"):
        assert parent(4) == 41
    status = DBOS.get_workflow_status("parent-1-1")
    assert status is not None
    assert (status.parent_workflow_id, status.queue_name, status.output) == (
        "parent-1",
        "children",
        40,
    )
    steps = DBOS.list_workflow_steps("parent-1")
    assert (steps[0]["function_name"], steps[0]["child_workflow_id"]) == ("child", "parent-1-1")

    # Recovery replays the parent: its enqueue is recorded, so nothing is enqueued again.
    mark_pending(db_url, "parent-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("parent-1").get_result() == 41
    # A fork from after the enqueue replays it too, and gets the same child.
    forked = DBOS.fork_workflow("parent-1", 2)
    assert forked.get_result() == 41
    assert DBOS.list_workflow_steps(forked.workflow_id)[0]["child_workflow_id"] == "parent-1-1"
    assert _count(db_url, "child") == 1
    assert child_runs == [4]


def test_a_workflow_no_process_registers_yet_waits_for_one_that_does(
    dbos: type[DBOS], db_url: str
) -> None:
    Queue("later", polling_interval_sec=0.1)
    options: EnqueueOptions = {"workflow_name": "implemented-later", "queue_name": "later"}
    handle = DBOS.enqueue_workflow_with_options(options, 21)
    assert handle.get_status().status == "ENQUEUED"  # no check against this registry

    # Another deployment of the application, which implements it, picks it up.
    DBOS.destroy()

    @DBOS.workflow(name="implemented-later")
    def implemented_later(n: int) -> int:
        return n * 2

    relaunch(db_url)
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 42
    assert workflow_row(db_url, handle.workflow_id).executor_id == "local"


def test_async_form_outside_and_inside_a_workflow(dbos: type[DBOS], db_url: str) -> None:
    Queue("async")

    @DBOS.workflow(name="inc")
    async def inc(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @DBOS.workflow(name="async-parent")
    async def async_parent() -> int:
        options: EnqueueOptions = {"workflow_name": "inc", "queue_name": "async"}
        handle = await DBOS.enqueue_workflow_with_options_async(options, 10)
        return int(await handle.get_result())

    async def main() -> tuple[int, int]:
        options: EnqueueOptions = {"workflow_name": "inc", "queue_name": "async"}
        handle = await DBOS.enqueue_workflow_with_options_async(options, 1)
        assert isinstance(handle, WorkflowHandleAsync)
        with SetWorkflowID("async-parent-1"):
            in_workflow = await async_parent()
        return await handle.get_result(), in_workflow

    assert asyncio.run(main()) == (2, 11)
    assert DBOS.list_workflow_steps("async-parent-1")[0]["child_workflow_id"] == "async-parent-1-1"
    assert _count(db_url, "inc") == 2


def test_deduplication_id(dbos: type[DBOS]) -> None:
    Queue("dedup")
    # A name no process registers: the holder stays ENQUEUED, holding its deduplication ID.
    options: EnqueueOptions = {
        "workflow_name": "unimplemented",
        "queue_name": "dedup",
        "deduplication_id": "user-7",
    }
    holder = DBOS.enqueue_workflow_with_options(options, 1)
    with pytest.raises(DBOSQueueDeduplicatedError):
        DBOS.enqueue_workflow_with_options(options, 2)
    joined = DBOS.enqueue_workflow_with_options(
        {**options, "duplication_policy": "return-existing"}, 3
    )
    assert joined.workflow_id == holder.workflow_id
    # From an enclosing SetEnqueueOptions when the options leave it out.
    with SetEnqueueOptions(deduplication_id="user-7"), pytest.raises(DBOSQueueDeduplicatedError):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "unimplemented", "queue_name": "dedup"}
        )
    assert len(DBOS.list_workflows(name="unimplemented")) == 1


def test_priority_orders_the_queue(dbos: type[DBOS]) -> None:
    Queue("prio", concurrency=1)
    gate = threading.Event()
    order: list[str] = []

    @DBOS.step()
    def wait_gate() -> None:
        assert gate.wait(20)

    @DBOS.workflow(name="blocker")
    def blocker() -> None:
        wait_gate()

    @DBOS.workflow(name="ranked")
    def ranked(label: str) -> None:
        order.append(label)

    first = DBOS.enqueue_workflow_with_options({"workflow_name": "blocker", "queue_name": "prio"})
    wait_until(lambda: first.get_status().status == "PENDING", what="the blocker to start")
    handles = [
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "ranked", "queue_name": "prio", "priority": priority}, label
        )
        for label, priority in (("low", 9), ("high", 1), ("mid", 5))
    ]
    with SetEnqueueOptions(priority=3):  # the ambient priority, when the options give none
        handles.append(
            DBOS.enqueue_workflow_with_options(
                {"workflow_name": "ranked", "queue_name": "prio"}, "ambient"
            )
        )
    assert [h.get_status().priority for h in handles] == [9, 1, 5, 3]
    gate.set()
    for handle in handles:
        handle.get_result()
    assert order == ["high", "ambient", "mid", "low"]


def test_delay_holds_the_workflow_back(dbos: type[DBOS], db_url: str) -> None:
    Queue("delayed", polling_interval_sec=0.1)

    @DBOS.workflow(name="punctual")
    def punctual() -> str:
        return "on time"

    options: EnqueueOptions = {"workflow_name": "punctual", "queue_name": "delayed"}
    parked = DBOS.enqueue_workflow_with_options({**options, "delay_seconds": 3600})
    assert parked.get_status().status == "DELAYED"
    soon = DBOS.enqueue_workflow_with_options({**options, "delay_seconds": 0.3})
    assert soon.get_result() == "on time"
    row = workflow_row(db_url, soon.workflow_id)
    # The delay counts from the enqueue call, a millisecond or so before the row's creation.
    assert row.not_before_epoch_ms - row.created_at >= 290
    assert row.dequeued_at_epoch_ms >= row.not_before_epoch_ms
    assert parked.get_status().status == "DELAYED"


def test_options_left_out_come_from_the_context(dbos: type[DBOS], db_url: str) -> None:
    Queue("context")

    @DBOS.workflow(name="who")
    def who() -> str | None:
        return DBOS.authenticated_user

    base: EnqueueOptions = {"workflow_name": "who", "queue_name": "context"}
    with (
        SetWorkflowID("ctx-1"),
        SetWorkflowTimeout(30),
        SetWorkflowAttributes({"team": "a", "tier": 1}),
        DBOSContextSetAuth("ann", ["ops"]),
    ):
        ambient = DBOS.enqueue_workflow_with_options(base)
    assert (ambient.workflow_id, ambient.get_result()) == ("ctx-1", "ann")
    status = ambient.get_status()
    assert (status.authenticated_user, status.authenticated_roles) == ("ann", ["ops"])
    assert status.attributes == {"team": "a", "tier": 1}
    assert workflow_row(db_url, "ctx-1").workflow_timeout_ms == 30_000
    with (
        SetWorkflowID("ctx-ignored"),
        SetWorkflowAttributes({"team": "a", "tier": 1}),
        DBOSContextSetAuth("ann", ["ops"]),
    ):
        given = DBOS.enqueue_workflow_with_options(
            {**base, "workflow_id": "ctx-2", "workflow_timeout": 5,
             "attributes": {"team": "b"}, "authenticated_user": "bob"},
        )  # fmt: skip
    assert (given.workflow_id, given.get_result()) == ("ctx-2", "bob")
    assert given.get_status().attributes == {"team": "b", "tier": 1}
    assert workflow_row(db_url, "ctx-2").workflow_timeout_ms == 5_000
    assert DBOS.get_workflow_status("ctx-ignored") is None


def test_every_option_is_honoured_or_refused(dbos: type[DBOS]) -> None:
    Queue("plain")
    Queue("parts", partition_concurrency=1)
    base: EnqueueOptions = {"workflow_name": "nothing", "queue_name": "plain"}
    for key, value in (
        ("application_name", "other"),
        ("shard_key", "s"),
        ("max_recovery_attempts", 5),
    ):
        with pytest.raises(DBOSException, match=rf"does not support the option.*{key}"):
            DBOS.enqueue_workflow_with_options({**base, key: value})  # type: ignore[misc]
    with pytest.raises(DBOSException, match=r"unknown option.*priorty"):
        DBOS.enqueue_workflow_with_options({**base, "priorty": 1})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(DBOSException, match="needs options with 'workflow_name' and 'queue_name'"):
        DBOS.enqueue_workflow_with_options({"workflow_name": "nothing"})
    with pytest.raises(DBOSException, match="workflow_timeout must be a positive number"):
        DBOS.enqueue_workflow_with_options({**base, "workflow_timeout": -1})
    with pytest.raises(DBOSException, match="is not partitioned"):
        DBOS.enqueue_workflow_with_options({**base, "queue_partition_key": "k"})
    with pytest.raises(DBOSException, match="is partitioned"):
        DBOS.enqueue_workflow_with_options({"workflow_name": "nothing", "queue_name": "parts"})
    with pytest.raises(ValueError, match="priority"):
        DBOS.enqueue_workflow_with_options({**base, "priority": 0})
    assert DBOS.list_workflows(name="nothing") == []  # nothing was written
    keyed = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "nothing", "queue_name": "parts", "queue_partition_key": "k",
         "class_name": "Cls", "instance_name": "inst"},
    )  # fmt: skip
    status = keyed.get_status()
    assert (status.queue_partition_key, status.class_name, status.config_name) == (
        "k", "Cls", "inst",
    )  # fmt: skip
