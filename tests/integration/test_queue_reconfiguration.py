"""Changing queues at run time on both backends: settings stored for every process and applied
by running dequeue loops, registration conflicts (``on_conflict``), deletion."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from perdure import DBOS, DBOSClient, Queue
from perdure.error import DBOSException
from perdure.storage import open_store
from tests.fixtures.app import make_config, wait_until
from tests.integration.queue_timeline import Timeline
from tests.integration.system_tables import relaunch, run_sql


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    """A client of the launched app's database (another process, as far as it knows)."""
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_a_running_dequeuer_applies_a_changed_limit(dbos: type[DBOS], client: DBOSClient) -> None:
    queue = DBOS.register_queue("elastic", global_concurrency=1, polling_interval_sec=0.1)
    timeline = Timeline()
    gates = {"a": threading.Event(), "b": threading.Event()}

    @DBOS.workflow()
    def job(group: str, i: int) -> None:
        timeline.start(f"{group}{i}", group)
        gates[group].wait(20)
        timeline.end(f"{group}{i}")

    first = [queue.enqueue(job, "a", i) for i in range(4)]
    wait_until(lambda: timeline.running() == 1, what="the first job to run")
    # Raised by another process: this process's loop applies it, no restart.
    remote = client.retrieve_queue("elastic")
    assert remote is not None
    remote.set_global_concurrency(3)
    wait_until(lambda: timeline.running() == 3, what="two more jobs under the raised limit")
    assert Counter(h.get_status().status for h in first)["PENDING"] == 3
    # Lowered here: the running ones finish, then one at a time.
    queue.set_concurrency(1)
    later = [queue.enqueue(job, "b", i) for i in range(3)]
    gates["a"].set()
    for handle in first:
        handle.get_result()
    wait_until(lambda: timeline.running("b") == 1, what="a job of the second group to run")
    assert Counter(h.get_status().status for h in later)["PENDING"] == 1
    gates["b"].set()
    for handle in later:
        handle.get_result()
    assert timeline.max_overlap("a") == 3
    assert timeline.max_overlap("b") == 1


def test_settings_read_what_any_process_stored(
    dbos: type[DBOS], client: DBOSClient, db_url: str
) -> None:
    queue = Queue("shared", worker_concurrency=2)
    remote = client.retrieve_queue("shared")
    assert remote is not None
    assert (remote.name, remote.worker_concurrency, remote.application_name) == (
        "shared", 2, None,
    )  # fmt: skip
    remote.set_limiter({"limit": 5, "period": 2})
    remote.set_polling_interval_sec(0.25)
    remote.set_partition_limiter({"limit": 1, "period": 1})
    assert queue.limiter == {"limit": 5, "period": 2.0}
    assert (queue.polling_interval_sec, queue.partition_queue) == (0.25, True)
    assert queue.partition_limiter == {"limit": 1, "period": 1.0}
    queue.set_partition_limiter(None)  # the last partition limit: no longer partitioned
    queue.set_priority_enabled(True)
    assert (remote.partition_queue, remote.priority_enabled) == (False, True)
    rows = run_sql(db_url, "SELECT rate_limit, partition_rate_limit FROM {p}queues")
    assert [tuple(r) for r in rows] == [(5, None)]


def test_async_getters_and_setters(dbos: type[DBOS]) -> None:
    queue = DBOS.register_queue("asynchronous", global_concurrency=4)

    async def main() -> tuple[object, ...]:
        await queue.set_global_concurrency_async(6)
        await queue.set_worker_concurrency_async(3)
        await queue.set_partition_concurrency_async(2)
        await queue.set_partition_worker_concurrency_async(1)
        await queue.set_limiter_async({"limit": 9, "period": 3})
        await queue.set_polling_interval_sec_async(0.5)
        return (
            await queue.get_concurrency_async(),
            await queue.get_global_concurrency_async(),
            await queue.get_worker_concurrency_async(),
            await queue.get_partition_concurrency_async(),
            await queue.get_partition_worker_concurrency_async(),
            await queue.get_partition_limiter_async(),
            await queue.get_limiter_async(),
            await queue.get_polling_interval_sec_async(),
            await queue.get_partition_queue_async(),
        )

    assert asyncio.run(main()) == (6, 6, 3, 2, 1, None, {"limit": 9, "period": 3.0}, 0.5, True)
    found = DBOS.retrieve_queue("asynchronous")
    assert found is not None
    assert found.partition_worker_concurrency == 1


def test_a_bad_change_is_refused_and_nothing_stored(dbos: type[DBOS], db_url: str) -> None:
    queue = DBOS.register_queue("strict", global_concurrency=3, worker_concurrency=2)
    with pytest.raises(ValueError, match="worker_concurrency=2 exceeds concurrency=1"):
        queue.set_global_concurrency(1)
    with pytest.raises(ValueError, match="must be a positive integer"):
        queue.set_worker_concurrency(0)
    with pytest.raises(ValueError, match="both 'limit' and 'period'"):
        queue.set_limiter({"limit": 1})
    with pytest.raises(ValueError, match="partition_concurrency=4 exceeds concurrency=3"):
        queue.set_partition_concurrency(4)
    queue.set_partition_worker_concurrency(1)
    with pytest.raises(DBOSException, match="partition_\\* limits partition it"):
        queue.set_partition_queue(False)
    columns = "concurrency, worker_concurrency, rate_limit, partition_concurrency"
    rows = run_sql(db_url, f"SELECT {columns}, partition_worker_concurrency FROM {{p}}queues")
    assert [tuple(r) for r in rows] == [(3, 2, None, None, 1)]
    DBOS.delete_queue("strict")
    with pytest.raises(DBOSException, match="not stored"):
        queue.set_worker_concurrency(1)


def test_changes_need_a_launch(db_url: str) -> None:
    DBOS(config=make_config(db_url))
    try:
        queue = Queue("early", concurrency=2)
        assert queue.concurrency == 2  # the declared settings until launch
        with pytest.raises(DBOSException, match=r"DBOS\.launch"):
            queue.set_concurrency(3)
    finally:
        DBOS.destroy(destroy_registry=True)


def test_on_conflict_decides_which_settings_a_registration_keeps(
    dbos: type[DBOS], db_url: str
) -> None:
    DBOS.register_queue("deploy", global_concurrency=1)
    same = DBOS.register_queue("deploy", global_concurrency=1)  # the same settings: a no-op
    kept = DBOS.register_queue("deploy", global_concurrency=2, on_conflict="never_update")
    assert (same.global_concurrency, kept.global_concurrency) == (1, 1)
    updated = DBOS.register_queue("deploy", global_concurrency=3, on_conflict="always_update")
    assert updated.global_concurrency == 3
    with pytest.raises(ValueError, match="on_conflict must be one of"):
        DBOS.register_queue("deploy", on_conflict="sometimes")  # type: ignore[arg-type]

    # A rolling deploy: this process runs v1 while v2, registered later, is the latest.
    relaunch(db_url, application_version="v1")
    store = open_store(db_url)
    try:
        store.register_version("v1", "build-1")
        store.register_version("v2", "build-2")
    finally:
        store.close()
    older = DBOS.register_queue("deploy", global_concurrency=9)
    assert older.global_concurrency == 3  # the newer version's settings stand
    assert DBOS.register_queue("fresh", global_concurrency=9).global_concurrency == 9
    forced = DBOS.register_queue("deploy", global_concurrency=9, on_conflict="always_update")
    assert forced.global_concurrency == 9


def test_a_deleted_queue_is_not_served_until_registered_again(dbos: type[DBOS]) -> None:
    queue = DBOS.register_queue("doomed", global_concurrency=1, polling_interval_sec=0.1)
    release = threading.Event()

    @DBOS.workflow()
    def job(i: int) -> int:
        release.wait(20)
        return i

    running = queue.enqueue(job, 1)
    wait_until(lambda: running.get_status().status == "PENDING", what="the first job to start")
    waiting = queue.enqueue(job, 2)
    DBOS.delete_queue("doomed")
    assert DBOS.retrieve_queue("doomed") is None
    assert "doomed" not in [q.name for q in DBOS.list_queues()]
    later = queue.enqueue(job, 3)  # as in DBOS: it waits until the queue is declared again
    release.set()
    assert running.get_result() == 1  # what ran keeps running
    # A pass over the queues served here claimed this one, and not the deleted queue's.
    assert DBOS.register_queue("other").enqueue(job, 0).get_result() == 0
    assert (waiting.get_status().status, later.get_status().status) == ("ENQUEUED", "ENQUEUED")
    again = DBOS.register_queue("doomed")
    assert again.global_concurrency is None
    assert (waiting.get_result(), later.get_result()) == (2, 3)


def test_queues_are_listed_retrieved_and_deleted_from_a_client(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    Queue("declared", concurrency=2)
    made = client.register_queue("from-client", worker_concurrency=3, polling_interval_sec=0.1)
    assert (made.name, made.worker_concurrency) == ("from-client", 3)
    kept = client.register_queue("from-client", worker_concurrency=1, on_conflict="never_update")
    assert kept.worker_concurrency == 3
    assert [q.name for q in client.list_queues(application_name="any")] == [
        "declared", "from-client",
    ]  # fmt: skip
    assert [q.name for q in DBOS.list_queues()] == ["declared", "from-client"]
    with pytest.raises(DBOSException, match="update_if_latest_version"):
        client.register_queue("x", on_conflict="update_if_latest_version")
    with pytest.raises(DBOSException, match="application_name"):
        client.register_queue("x", application_name="other-app")
    with pytest.raises(DBOSException, match=r"DBOSClient\.enqueue"):
        made.enqueue(print)

    # The app serves the queue a client registered, though it never declared it.
    @DBOS.workflow()
    def job(x: int) -> int:
        return x * 2

    found = DBOS.retrieve_queue("from-client")
    assert found is not None
    assert found.enqueue(job, 21).get_result() == 42

    async def main() -> list[str]:
        await client.register_queue_async("async-made", global_concurrency=1)
        assert (await client.retrieve_queue_async("async-made")) is not None
        await client.delete_queue_async("async-made")
        assert (await client.retrieve_queue_async("async-made")) is None
        assert await DBOS.retrieve_queue_async("async-made") is None
        await DBOS.register_queue_async("async-dbos", global_concurrency=2)
        await DBOS.delete_queue_async("declared")
        return [q.name for q in await DBOS.list_queues_async()]

    assert asyncio.run(main()) == ["async-dbos", "from-client"]
    client.delete_queue("from-client")
    assert client.retrieve_queue("from-client") is None
    assert [q.name for q in client.list_queues()] == ["async-dbos"]
