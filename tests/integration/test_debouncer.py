"""`Debouncer` and `DebouncerClient`: one execution per burst of calls, with the last arguments.

Periods of an hour keep a window open for as long as a test needs it; a short period on the
last call of a burst then starts its workflow soon. Assertions wait on results, never on time.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from perdure import (
    DBOS,
    DBOSClient,
    Debouncer,
    DebouncerClient,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from perdure.error import DBOSException, DBOSQueueDeduplicatedError
from tests.integration.system_tables import mark_pending, relaunch, step_rows

HOUR = 3600.0
SOON = 0.05


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_a_burst_runs_once_with_its_last_arguments(dbos: type[DBOS]) -> None:
    runs: list[int] = []

    @DBOS.workflow(name="apply")
    def apply(x: int) -> int:
        runs.append(x)
        return x

    first = Debouncer.create(apply).debounce("k", HOUR, 1)
    status = first.get_status()
    assert (status.status, status.deduplication_id) == ("DELAYED", "apply-k")
    assert status.name == "apply"
    second = Debouncer.create(apply).debounce("k", HOUR, 2)
    # A shorter period moves the start earlier: the workflow starts soon, with 3.
    last = Debouncer.create(apply).debounce("k", SOON, 3)
    assert first.workflow_id == second.workflow_id == last.workflow_id
    assert first.get_result() == last.get_result() == 3
    assert runs == [3]
    assert first.get_status().input == {"args": (3,), "kwargs": {}}

    # The next call opens a new window: a new workflow.
    again = Debouncer.create(apply).debounce("k", SOON, 4)
    assert again.workflow_id != first.workflow_id
    assert again.get_result() == 4
    assert runs == [3, 4]


def test_keys_debounce_apart(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="echo")
    def echo(x: str) -> str:
        return x

    debouncer = Debouncer.create(echo)
    one = [debouncer.debounce("one", HOUR, f"one-{i}").workflow_id for i in range(3)]
    two = [debouncer.debounce("two", HOUR, f"two-{i}").workflow_id for i in range(3)]
    assert len(set(one)) == len(set(two)) == 1
    assert one[0] != two[0]
    assert debouncer.debounce("one", SOON, "one-last").get_result() == "one-last"
    assert debouncer.debounce("two", SOON, "two-last").get_result() == "two-last"


def test_a_call_while_the_workflow_runs_opens_the_next_window(dbos: type[DBOS]) -> None:
    started = threading.Event()
    release = threading.Event()

    @DBOS.workflow(name="slow")
    def slow(x: int) -> int:
        started.set()
        release.wait(timeout=60)
        return x

    debouncer = Debouncer.create(slow)
    first = debouncer.debounce("k", SOON, 1)
    assert started.wait(timeout=30)
    second = debouncer.debounce("k", HOUR, 2)
    assert second.workflow_id != first.workflow_id
    running = first.get_status()
    # The running workflow gave its key up to the new window.
    assert (running.status, running.deduplication_id) == ("PENDING", None)
    assert second.get_status().deduplication_id == "slow-k"
    release.set()
    assert first.get_result() == 1
    assert debouncer.debounce("k", SOON, 3).workflow_id == second.workflow_id
    assert second.get_result() == 3


def test_the_timeout_caps_the_start_of_a_window(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="capped")
    def capped(x: int) -> int:
        return x

    debouncer = Debouncer.create(capped, debounce_timeout_sec=30)
    handle = debouncer.debounce("k", HOUR, 1)
    status = handle.get_status()
    assert status.delay_until_epoch_ms is not None
    assert status.delay_until_epoch_ms <= status.created_at + 30_000
    assert debouncer.debounce("k", HOUR, 2).workflow_id == handle.workflow_id
    bounced = handle.get_status()
    assert bounced.delay_until_epoch_ms is not None
    assert bounced.delay_until_epoch_ms <= status.created_at + 30_000
    assert bounced.input == {"args": (2,), "kwargs": {}}
    DBOS.cancel_workflow(handle.workflow_id)


def test_the_timeout_starts_the_workflow_however_long_the_period(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="capped")
    def capped(x: int) -> int:
        return x

    debouncer = Debouncer.create(capped, debounce_timeout_sec=0.2)
    first = debouncer.debounce("k", HOUR, 1)
    second = debouncer.debounce("k", HOUR, 2)
    # The second call landed in the first window, or (on a slow machine) opened the next.
    same_window = second.workflow_id == first.workflow_id
    assert first.get_result() == (2 if same_window else 1)
    assert second.get_result() == 2


def test_set_workflow_id_names_the_window_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="named")
    def named(x: int) -> int:
        return x

    debouncer = Debouncer.create(named)
    pinned = str(uuid.uuid4())
    with SetWorkflowID(pinned):
        first = debouncer.debounce("k", HOUR, 1)
    with SetWorkflowID(pinned):  # the same ID again in the same window: a bounce
        second = debouncer.debounce("k", SOON, 2)
    assert first.workflow_id == second.workflow_id == pinned
    assert second.get_result() == 2


def test_queue_timeout_and_version_apply_to_the_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="queued")
    def queued(x: int) -> int:
        return x

    queue = DBOS.register_queue("debounced")
    debouncer = Debouncer.create(queued, queue=queue)
    with SetWorkflowTimeout(5.0):
        handle = debouncer.debounce("k", SOON, 1)
    assert handle.get_result() == 1
    status = handle.get_status()
    assert (status.queue_name, status.workflow_timeout_ms) == ("debounced", 5000)
    assert status.workflow_deadline_epoch_ms is not None

    by_name = Debouncer.create(queued, queue="debounced")
    with SetEnqueueOptions(app_version="v-test"):
        versioned = by_name.debounce("other", HOUR, 2)
    assert versioned.get_status().app_version == "v-test"
    DBOS.cancel_workflow(versioned.workflow_id)

    with pytest.raises(DBOSException, match="no such queue"):
        Debouncer.create(queued, queue="missing").debounce("k", SOON, 1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"deduplication_id": "mine"}, "deduplication_id"),
        ({"delay_seconds": 100.0}, "delay"),
        ({"priority": 1}, "priority"),
        ({"queue_partition_key": "p"}, "partition key"),
        ({"deduplication_id": "x", "duplication_policy": "return-existing"}, "deduplication"),
    ],
)
def test_options_a_debounce_owns_are_refused(
    client: DBOSClient, options: dict[str, object], match: str
) -> None:
    @DBOS.workflow(name="owned")
    def owned(x: int) -> int:
        return x

    with pytest.raises(DBOSException, match=match), SetEnqueueOptions(**options):  # type: ignore[arg-type]
        Debouncer.create(owned).debounce("k", 1.0, 1)
    DBOS.register_queue("owned-queue")
    workflow_options = {"workflow_name": "owned", "queue_name": "owned-queue", **options}
    with pytest.raises(DBOSException, match=match):
        DebouncerClient(client, workflow_options).debounce("k", 1.0, 1)  # type: ignore[arg-type]
    assert DBOS.list_workflows(name="owned") == []


def test_bad_arguments_are_refused(client: DBOSClient) -> None:
    @DBOS.workflow(name="target")
    def target(x: int) -> int:
        return x

    class Holder:
        def method(self) -> None: ...

    with pytest.raises(TypeError, match="not methods"):
        Debouncer.create(Holder().method)
    with pytest.raises(DBOSException, match="not a workflow"):
        Debouncer.create(lambda: None)
    with pytest.raises(DBOSException, match="application_name"):
        Debouncer.create(target, application_name="other-app")
    with pytest.raises(DBOSException, match="application_name"):
        DebouncerClient(client, {"workflow_name": "target"}, application_name="other-app")
    with pytest.raises(ValueError, match="debounce_timeout_sec"):
        Debouncer.create(target, debounce_timeout_sec=-1)
    with pytest.raises(ValueError, match="debounce_period_sec"):
        Debouncer.create(target).debounce("k", -1, 1)
    with (
        pytest.raises(DBOSException, match="reject"),
        SetWorkflowID("pinned", workflow_id_reuse_policy="reject"),
    ):
        Debouncer.create(target).debounce("k", 1.0, 1)
    assert DBOS.list_workflows(name="target") == []


def test_a_plain_enqueue_holding_the_key_is_a_conflict(dbos: type[DBOS]) -> None:
    release = threading.Event()

    @DBOS.workflow(name="held")
    def held(x: int) -> int:
        release.wait(timeout=60)
        return x

    queue = DBOS.register_queue("plain")
    with SetEnqueueOptions(deduplication_id="held-k"):
        blocker = queue.enqueue(held, 1)
    with pytest.raises(DBOSQueueDeduplicatedError) as caught:
        Debouncer.create(held, queue=queue).debounce("k", SOON, 2)
    assert caught.value.holder_workflow_id == blocker.workflow_id
    release.set()
    assert blocker.get_result() == 1


def test_colliding_keys_of_two_workflows_are_a_conflict(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    # "colw" + "b-k" and "colw-b" + "k" both make the deduplication ID "colw-b-k".
    DBOS.register_queue("collisions")
    first = DebouncerClient(client, {"workflow_name": "colw", "queue_name": "collisions"})
    other = DebouncerClient(client, {"workflow_name": "colw-b", "queue_name": "collisions"})
    handle = first.debounce("b-k", HOUR, 1)
    with pytest.raises(DBOSQueueDeduplicatedError):
        other.debounce("k", SOON, 2)
    status = handle.get_status()
    assert (status.status, status.name, status.input) == (
        "DELAYED",
        "colw",
        {"args": (1,), "kwargs": {}},
    )
    assert first.debounce("b-k", HOUR, 3).workflow_id == handle.workflow_id
    DBOS.cancel_workflow(handle.workflow_id)


def test_cancelling_the_waiting_workflow_frees_the_key(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="cancellable")
    def cancellable(x: int) -> int:
        return x

    debouncer = Debouncer.create(cancellable)
    handle = debouncer.debounce("k", HOUR, 1)
    DBOS.cancel_workflow(handle.workflow_id)
    fresh = debouncer.debounce("k", SOON, 2)
    assert fresh.workflow_id != handle.workflow_id
    assert fresh.get_result() == 2
    assert handle.get_status().status == "CANCELLED"


def test_callers_in_many_threads_and_a_client_share_one_window(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    runs: list[str] = []

    @DBOS.workflow(name="shared")
    def shared(x: str) -> str:
        runs.append(x)
        return x

    DBOS.register_queue("shared")
    local = Debouncer.create(shared, queue="shared")
    remote = DebouncerClient(client, {"workflow_name": "shared", "queue_name": "shared"})
    ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def caller(name: str, debounce: Callable[..., Any]) -> None:
        barrier.wait(timeout=30)  # all start at once: their first calls race for the key
        for i in range(8):
            workflow_id = debounce("k", HOUR, f"{name}-{i}").workflow_id
            with lock:
                ids.append(workflow_id)

    threads = [
        threading.Thread(target=caller, args=(f"local{n}", local.debounce)) for n in range(3)
    ]
    threads.append(threading.Thread(target=caller, args=("client", remote.debounce)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == 32
    assert len(set(ids)) == 1
    last = local.debounce("k", SOON, "last")
    assert last.workflow_id == ids[0]
    assert last.get_result() == "last"
    assert runs == ["last"]
    assert len(DBOS.list_workflows(name="shared")) == 1


def test_debounce_in_a_workflow_is_recorded_and_replays(dbos: type[DBOS], db_url: str) -> None:
    runs: list[int] = []

    @DBOS.workflow(name="child")
    def child(x: int) -> int:
        runs.append(x)
        return x

    debouncer = Debouncer.create(child)

    @DBOS.workflow(name="parent")
    def parent() -> str:
        return debouncer.debounce("replayed", HOUR, 7).workflow_id

    with SetWorkflowID("debouncing-parent"), SetWorkflowTimeout(30):
        child_id = DBOS.start_workflow(parent).get_result()
    status = DBOS.get_workflow_status(child_id)
    assert status is not None
    # The debounced workflow is the parent's child, without the parent's deadline.
    assert (status.status, status.parent_workflow_id) == ("DELAYED", "debouncing-parent")
    assert status.workflow_deadline_epoch_ms is None
    names = [row.function_name for row in step_rows(db_url, "debouncing-parent")]
    assert names == ["DBOS.debounce", "child"]

    mark_pending(db_url, "debouncing-parent")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("debouncing-parent").get_result() == child_id
    assert len(DBOS.list_workflows(name="child")) == 1
    assert debouncer.debounce("replayed", SOON, 8).workflow_id == child_id
    assert DBOS.retrieve_workflow(child_id).get_result() == 8
    assert runs == [8]


def test_a_pinned_id_left_unused_by_a_bounce_is_not_leaked(dbos: type[DBOS]) -> None:
    @DBOS.workflow(name="child")
    def child(x: int) -> int:
        return x

    @DBOS.workflow(name="other")
    def other(x: int) -> int:
        return x

    debouncer = Debouncer.create(child)

    @DBOS.workflow(name="parent")
    def parent(pinned: str) -> tuple[str, str]:
        first = debouncer.debounce("k", HOUR, 1)
        with SetWorkflowID(pinned):
            bounced = debouncer.debounce("k", HOUR, 2)
        assert bounced.workflow_id == first.workflow_id
        return first.workflow_id, DBOS.start_workflow(other, 3).workflow_id

    waiting, started = DBOS.start_workflow(parent, "pinned-id").get_result()
    assert started != "pinned-id"
    assert DBOS.retrieve_workflow(started).get_result() == 3
    DBOS.cancel_workflow(waiting)


def test_async_twins(dbos: type[DBOS], client: DBOSClient) -> None:
    @DBOS.workflow(name="twin")
    async def twin(x: int) -> int:
        return x

    DBOS.register_queue("twins")
    local = Debouncer.create_async(twin)
    remote = DebouncerClient(client, {"workflow_name": "twin", "queue_name": "twins"})

    async def main() -> tuple[int, int]:
        first = await local.debounce_async("k", HOUR, 1)
        last = await local.debounce_async("k", SOON, 2)
        assert first.workflow_id == last.workflow_id
        from_client = await remote.debounce_async("k", HOUR, 3)
        client_last = await remote.debounce_async("k", SOON, 4)
        assert from_client.workflow_id == client_last.workflow_id
        return await first.get_result(), await client_last.get_result()

    assert asyncio.run(main()) == (2, 4)


def test_client_debounce_names_its_workflow_by_the_options(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    @DBOS.workflow(name="by_client")
    def by_client(x: int) -> int:
        return x

    DBOS.register_queue("clients")
    options = {"workflow_name": "by_client", "queue_name": "clients"}
    debouncer = DebouncerClient(client, options)  # type: ignore[arg-type]
    first = debouncer.debounce("k", HOUR, 1)
    assert debouncer.debounce("k", SOON, 2).workflow_id == first.workflow_id
    assert first.get_result() == 2
    options["workflow_id"] = "client-pinned"  # read at each call, as in DBOS
    pinned = debouncer.debounce("k", SOON, 3)
    assert pinned.workflow_id == "client-pinned"
    assert pinned.get_result() == 3
