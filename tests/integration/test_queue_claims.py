"""What a dequeuing process claims: only what it can run, under the limits stored for the queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from perdure import DBOS, DBOSClient, Queue
from perdure.storage import open_store
from perdure.storage.records import QueueRecord
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import workflow_row

WAIT = 20.0


@pytest.fixture
def versioned(db_url: str) -> Iterator[type[DBOS]]:
    """Perdure launched as application version "v1"."""
    DBOS(config=make_config(db_url, application_version="v1"))
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def test_only_registered_workflows_of_this_version_or_none_are_claimed(
    versioned: type[DBOS], db_url: str
) -> None:
    Queue("jobs")

    @DBOS.workflow(name="known")
    def known(x: int) -> int:
        return x + 1

    DBOS.launch()
    client = DBOSClient(db_url)
    try:
        # A workflow this process does not know, and one of another version, are left
        # ENQUEUED for a process that can run them: not claimed and stranded here.
        unknown = client.enqueue({"workflow_name": "unknown", "queue_name": "jobs"}, 1)
        other = client.enqueue(
            {"workflow_name": "known", "queue_name": "jobs", "app_version": "v2"}, 2
        )
        mine = client.enqueue(
            {"workflow_name": "known", "queue_name": "jobs", "app_version": "v1"}, 3
        )
        unversioned = client.enqueue({"workflow_name": "known", "queue_name": "jobs"}, 4)
        assert mine.get_result(timeout_sec=WAIT) == 4  # not held up behind the others
        assert unversioned.get_result(timeout_sec=WAIT) == 5
    finally:
        client.destroy()
    assert workflow_row(db_url, unknown.workflow_id).status == "ENQUEUED"
    assert workflow_row(db_url, other.workflow_id).status == "ENQUEUED"
    # An unversioned workflow runs anywhere, and is recorded with the version that ran it.
    assert workflow_row(db_url, unversioned.workflow_id).app_version == "v1"


def test_the_limits_stored_for_a_queue_are_the_ones_enforced(
    versioned: type[DBOS], db_url: str
) -> None:
    queue = Queue("shared", concurrency=5)
    gate = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    @DBOS.step()
    def hold() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        gate.wait(WAIT)
        with lock:
            running -= 1

    @DBOS.workflow()
    def job() -> None:
        hold()

    DBOS.launch()
    # Another process (a newer build) stored the queue with a tighter limit since: every
    # process enforces what is stored, not what its own code says.
    store = open_store(db_url)
    try:
        store.save_queue(QueueRecord("shared", 1, None, None, None, False, False, 1.0))
    finally:
        store.close()
    handles = [queue.enqueue(job) for _ in range(4)]
    wait_until(lambda: most >= 1, what="the first job to start")
    # Under the code's own limit (5) the pass that claimed the first would have claimed all.
    statuses = [h.get_status().status for h in handles]
    assert statuses.count("PENDING") == 1, statuses
    gate.set()
    for handle in handles:
        handle.get_result()
    assert most == 1
