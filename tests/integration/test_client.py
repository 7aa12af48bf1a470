"""`DBOSClient` against a database a launched app uses: in this process and from another one."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from perdure import DBOS, DBOSClient, Queue, SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
)
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from perdure.storage import open_store
from tests.fixtures.app import wait_until
from tests.integration.system_tables import relaunch, run_sql, workflow_row

WAIT = 10.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> DBOSClient:
    # On SQLite the app sees the client's writes by polling: make it poll often.
    relaunch(db_url, notification_listener_polling_interval_sec=0.05)
    opened = DBOSClient(db_url)
    yield opened  # type: ignore[misc]
    opened.destroy()


def _blocked_workflow(ran: list[str]):  # type: ignore[no-untyped-def]
    """A workflow whose first step waits for its gate; returns (workflow, entered, gate)."""
    entered, gate = threading.Event(), threading.Event()

    @DBOS.step()
    def first() -> None:
        entered.set()
        assert gate.wait(WAIT)
        ran.append("first")

    @DBOS.step()
    def second() -> str:
        ran.append("second")
        return "finished"

    @DBOS.workflow()
    def blocked() -> str:
        first()
        return second()

    return blocked, entered, gate


def test_client_lists_retrieves_and_cancels(client: DBOSClient) -> None:
    @DBOS.workflow()
    def double(n: int) -> int:
        return 2 * n

    with SetWorkflowID("done"):
        double(21)
    ran: list[str] = []
    blocked, entered, gate = _blocked_workflow(ran)
    with SetWorkflowID("running"):
        handle = DBOS.start_workflow(blocked)
    assert entered.wait(WAIT)

    assert [s.workflow_id for s in client.list_workflows()] == ["done", "running"]
    assert [s.workflow_id for s in client.list_workflows(status="PENDING")] == ["running"]
    assert client.list_queued_workflows() == []
    assert client.retrieve_workflow("done").get_result() == 42
    assert client.retrieve_workflow("done").get_status().output == 42
    assert [s["function_id"] for s in client.list_workflow_steps("running")] == []

    client.cancel_workflow("running")
    gate.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        client.retrieve_workflow("running").get_result(timeout_sec=WAIT)
    assert ran == ["first"]
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.retrieve_workflow("nobody")
    client.cancel_workflow("nobody")  # an unknown ID is a no-op, as in DBOS
    assert client.list_workflows(workflow_ids=["nobody"]) == []


def test_client_result_waits_for_a_running_workflow(client: DBOSClient) -> None:
    ran: list[str] = []
    blocked, entered, gate = _blocked_workflow(ran)
    handle = DBOS.start_workflow(blocked)
    assert entered.wait(WAIT)
    remote = client.retrieve_workflow(handle.workflow_id)
    with pytest.raises(TimeoutError, match="still running"):
        remote.get_result(timeout_sec=0.05)
    gate.set()
    assert remote.get_result(timeout_sec=WAIT) == "finished"


def test_client_resume_and_fork_run_in_a_launched_process(client: DBOSClient, db_url: str) -> None:
    counts: Counter[str] = Counter()

    @DBOS.step()
    def tick(name: str) -> str:
        counts[name] += 1
        return name

    @DBOS.workflow()
    def ticks() -> list[str]:
        return [tick("a"), tick("b"), tick("c")]

    with SetWorkflowID("source"):
        ticks()
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'CANCELLED', output = NULL "
            "WHERE workflow_id = 'source'")  # fmt: skip
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'source' "
            "AND function_id = 3")  # fmt: skip
    counts.clear()

    resumed = client.resume_workflow("source")
    forked = client.fork_workflow("source", 2)
    assert forked.get_status().forked_from == "source"
    # The launched app in this process claims both from the internal queue and runs them.
    assert resumed.get_result(timeout_sec=WAIT) == ["a", "b", "c"]
    assert forked.get_result(timeout_sec=WAIT) == ["a", "b", "c"]
    assert counts == Counter({"b": 1, "c": 2})  # resume re-ran c; the fork re-ran b and c
    for handle in (resumed, forked):
        status = handle.get_status()
        assert (status.queue_name, status.executor_id) == (INTERNAL_QUEUE_NAME, "local")

    client.delete_workflow(forked.workflow_id)
    assert DBOS.get_workflow_status(forked.workflow_id) is None


def test_client_resume_clears_the_timeout_and_fork_restarts_it(
    client: DBOSClient, db_url: str
) -> None:
    @DBOS.workflow()
    def quick() -> str:
        return "done"

    with SetWorkflowID("timed"), SetWorkflowTimeout(60):
        quick()
    forked = client.fork_workflow("timed", 1)
    assert forked.get_result(timeout_sec=WAIT) == "done"
    fork_row = workflow_row(db_url, forked.workflow_id)
    assert fork_row.workflow_timeout_ms == 60_000  # a fresh timeout, from its claim on
    assert fork_row.workflow_deadline_epoch_ms == fork_row.dequeued_at_epoch_ms + 60_000

    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'CANCELLED', output = NULL "
            "WHERE workflow_id = 'timed'")  # fmt: skip
    assert client.resume_workflow("timed").get_result(timeout_sec=WAIT) == "done"
    row = workflow_row(db_url, "timed")
    assert (row.workflow_timeout_ms, row.workflow_deadline_epoch_ms) == (None, None)


def test_client_async_twins(client: DBOSClient) -> None:
    @DBOS.workflow()
    def hello() -> str:
        return "hi"

    with SetWorkflowID("hello"):
        hello()

    async def main() -> None:
        assert [s.workflow_id for s in await client.list_workflows_async()] == ["hello"]
        assert await client.list_queued_workflows_async() == []
        assert await client.list_workflow_steps_async("hello") == []
        handle = await client.retrieve_workflow_async("hello")
        assert await handle.get_result() == "hi"
        assert (await handle.get_status()).status == "SUCCESS"
        await client.cancel_workflow_async("hello")  # finished: unchanged
        resumed = await client.resume_workflow_async("hello")
        assert await resumed.get_result() == "hi"
        forked = await client.fork_workflow_async("hello", 1)
        assert (await forked.get_status()).forked_from == "hello"
        assert await forked.get_result() == "hi"
        await client.delete_workflow_async(forked.workflow_id)

    asyncio.run(main())
    assert [s.workflow_id for s in DBOS.list_workflows()] == ["hello"]


def test_client_takes_dbos_management_options(client: DBOSClient) -> None:
    # Polled often: on SQLite the app sees the client's writes at its next poll.
    queue = Queue("client-options", polling_interval_sec=0.05)
    ran: list[str] = []
    blocked, entered, gate = _blocked_workflow(ran)

    @DBOS.workflow()
    def parent() -> str:
        return DBOS.start_workflow(blocked).get_result()  # type: ignore[no-any-return]

    @DBOS.workflow()
    def job() -> str:
        return "job"

    with SetWorkflowID("parent"):
        handle = DBOS.start_workflow(parent)
    assert entered.wait(WAIT)
    [kid] = client.list_workflows(parent_workflow_id="parent")
    client.cancel_workflow("parent")  # only the parent, as in DBOS
    assert kid.workflow_id not in [s.workflow_id for s in client.list_workflows(status="CANCELLED")]
    client.cancel_workflows([kid.workflow_id, "nobody"], cancel_children=True)
    gate.set()
    for cancelled in (handle, DBOS.retrieve_workflow(kid.workflow_id)):
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            cancelled.get_result()

    with SetEnqueueOptions(delay_seconds=3600):
        delayed = queue.enqueue(job)
    assert client.retrieve_workflow(delayed.workflow_id).get_status().status == "DELAYED"
    asyncio.run(client.set_workflow_delay_async(delayed.workflow_id, delay_seconds=0))
    remote = client.retrieve_workflow(delayed.workflow_id)
    assert remote.get_result(polling_interval_sec=0.5, timeout_sec=WAIT) == "job"

    resumed = client.resume_workflow("parent", queue_name=queue.name)
    assert resumed.get_status().queue_name == queue.name
    forked = client.fork_workflow(delayed.workflow_id, 1, queue_name=queue.name, timeout_seconds=9)
    assert forked.get_result(timeout_sec=WAIT) == "job"
    assert forked.get_status().workflow_timeout_ms == 9_000
    steps = client.list_workflow_steps("parent", load_output=False, limit=1)
    assert [s["output"] for s in steps] == [None]
    assert client.list_workflows(was_forked_from=True)[0].workflow_id == delayed.workflow_id


def test_client_refuses_a_missing_or_newer_schema(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        missing = db_url + ".absent"
        with pytest.raises(DBOSInitializationError, match="does not exist"):
            DBOSClient(missing)
        assert not Path(missing.removeprefix("sqlite:///")).exists()
        store = open_store(db_url)  # an empty file
        store.close()
    with pytest.raises(DBOSInitializationError, match="no Perdure schema"):
        DBOSClient(db_url)

    store = open_store(db_url)
    store.migrate()
    store.close()
    run_sql(db_url, "INSERT INTO {p}schema_migrations (version) VALUES (999)")
    with pytest.raises(DBOSInitializationError, match="newer"):
        DBOSClient(db_url)


_CANCEL_PROGRAM = """
import sys
from perdure import DBOSClient
client = DBOSClient(sys.argv[1])
client.cancel_workflow(sys.argv[2])
print(client.retrieve_workflow(sys.argv[2]).get_status().status)
client.destroy()
"""


def test_cancel_from_another_process(dbos: type[DBOS], db_url: str) -> None:
    ran: list[str] = []
    blocked, entered, gate = _blocked_workflow(ran)
    with SetWorkflowID("remote-cancel"):
        handle = DBOS.start_workflow(blocked)
    assert entered.wait(WAIT)

    done = subprocess.run(
        [sys.executable, "-c", _CANCEL_PROGRAM, db_url, "remote-cancel"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CANCELLED"
    gate.set()  # the step ends; its checkpoint is refused, so the workflow stops there
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert ran == ["first"]
    wait_until(lambda: not dbos._require_runtime().engine.is_active("remote-cancel"))
    assert handle.get_status().status == "CANCELLED"


def test_client_takes_dbos_constructor_options(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    opened = DBOSClient(
        system_database_url=db_url, lazy=False, use_listen_notify=True,
        system_database_pool_size=5, dbos_system_schema="dbos", sharding=False,
    )  # fmt: skip
    try:
        assert opened.list_workflows() == []
    finally:
        opened.destroy()
    assert "ignores DBOS's option(s) dbos_system_schema, system_database_pool_size" in caplog.text
    with pytest.raises(TypeError, match="unexpected keyword argument 'pool'"):
        DBOSClient(db_url, pool=3)
    with pytest.raises(DBOSInitializationError, match="DBOS Cloud"):
        DBOSClient(db_url, sharding=True)
