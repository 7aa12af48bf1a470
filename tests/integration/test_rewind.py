"""`rewind_workflow`: a finished workflow runs again from a step, under its own ID."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from perdure import (
    DBOS,
    AsyncSQLAlchemyDatasource,
    DBOSClient,
    SetWorkflowID,
    SQLAlchemyDatasource,
)
from perdure.error import DBOSException, DBOSNonExistentWorkflowError
from perdure.execution.app_database import sqlalchemy_url
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql

WAIT = 20.0


def _positions(workflow_id: str, name: str) -> list[int]:
    steps = DBOS.list_workflow_steps(workflow_id)
    return [s["function_id"] for s in steps if s["function_name"].endswith(name)]


def _run(func: Callable[..., object], *args: object) -> str:
    """Run a workflow to its end under a fresh ID; the ID."""
    workflow_id = str(uuid.uuid4())
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(func, *args).get_result()
    return workflow_id


@contextmanager
def _held_queue(name: str) -> Iterator[None]:
    """A queue whose one slot here is taken: what is enqueued on it waits until the block ends,
    so the state a rewind leaves can be looked at before the workflow runs again."""
    started, released = threading.Event(), threading.Event()

    @DBOS.workflow(name=f"{name}-holder")
    def holder() -> None:
        started.set()
        released.wait(WAIT)

    DBOS.register_queue(name, worker_concurrency=1)
    handle = DBOS.enqueue_workflow(name, holder)
    assert started.wait(WAIT)
    try:
        yield
    finally:
        released.set()
        handle.get_result()


# -- what runs again -------------------------------------------------------------------------------


def test_steps_from_the_cut_run_again_once_and_those_before_are_replayed(
    dbos: type[DBOS],
) -> None:
    runs: Counter[str] = Counter()

    @DBOS.step()
    def step(name: str) -> str:
        runs[name] += 1
        return f"{name}{runs[name]}"

    @DBOS.workflow()
    def flow() -> str:
        return "-".join(step(name) for name in ("a", "b", "c"))

    workflow_id = _run(flow)
    assert runs == {"a": 1, "b": 1, "c": 1}

    handle = DBOS.rewind_workflow(workflow_id, start_step=2)
    assert handle.workflow_id == workflow_id
    assert handle.get_result() == "a1-b2-c2"
    assert runs == {"a": 1, "b": 2, "c": 2}
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert (status.status, status.output, status.queue_name) == (
        "SUCCESS", "a1-b2-c2", INTERNAL_QUEUE_NAME,
    )  # fmt: skip
    assert [s["function_id"] for s in DBOS.list_workflow_steps(workflow_id)] == [1, 2, 3]

    # The default start is the first step: everything runs again.
    assert DBOS.rewind_workflow(workflow_id).get_result() == "a2-b3-c3"
    assert runs == {"a": 2, "b": 3, "c": 3}
    assert len(DBOS.list_workflows(workflow_ids=[workflow_id])) == 1


def test_a_failed_workflow_rewound_past_its_good_steps_succeeds(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()
    broken = threading.Event()
    broken.set()

    @DBOS.step()
    def prepare() -> int:
        runs["prepare"] += 1
        return 20

    @DBOS.step()
    def finish(n: int) -> int:
        runs["finish"] += 1
        if broken.is_set():
            raise RuntimeError("finish is broken")
        return n + 1

    @DBOS.workflow()
    def flow() -> int:
        return finish(prepare())

    workflow_id = "failing-flow"
    with SetWorkflowID(workflow_id), pytest.raises(RuntimeError, match="broken"):
        flow()
    broken.clear()  # the fix is deployed
    assert DBOS.rewind_workflow(workflow_id, start_step=2).get_result() == 21
    assert runs == {"prepare": 1, "finish": 2}
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert (status.status, status.error) == ("SUCCESS", None)


# -- refusals --------------------------------------------------------------------------------------


def test_a_workflow_that_has_not_ended_is_refused_until_cancelled(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()
    release = threading.Event()

    @DBOS.step()
    def work() -> None:
        runs["work"] += 1

    @DBOS.workflow()
    def waiting() -> str:
        work()
        if runs["work"] == 1:
            release.wait(WAIT)
        return "done"

    with SetWorkflowID("busy"):
        handle = DBOS.start_workflow(waiting)
    wait_until(lambda: runs["work"] == 1, what="the first step")
    with pytest.raises(DBOSException, match=r"busy.*PENDING.*Cancel it first") as refused:
        DBOS.rewind_workflow("busy")
    assert not isinstance(refused.value, (ValueError, DBOSNonExistentWorkflowError))
    assert DBOS.get_workflow_status("busy").status == "PENDING"  # type: ignore[union-attr]

    DBOS.cancel_workflow("busy")
    release.set()
    wait_until(lambda: not DBOS._require_runtime().engine.is_active("busy"), what="its stop")
    assert DBOS.rewind_workflow("busy").get_result() == "done"
    assert runs["work"] == 2
    assert handle.get_status().status == "SUCCESS"


def test_unknown_ids_bad_start_steps_and_shard_keys_are_refused(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def flow() -> str:
        return "ok"

    workflow_id = _run(flow)
    with pytest.raises(DBOSNonExistentWorkflowError, match="no-such-workflow"):
        DBOS.rewind_workflow("no-such-workflow")
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="start_step"):
            DBOS.rewind_workflow(workflow_id, start_step=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_name"):
        DBOS.rewind_workflow(workflow_id, queue_partition_key="k")
    with pytest.raises(DBOSException, match="shard"):
        DBOS.rewind_workflow(workflow_id, shard_key="s1")
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert (status.status, status.output) == ("SUCCESS", "ok")  # nothing changed
    assert DBOS.rewind_workflow(workflow_id, shard_key=None).get_result() == "ok"


# -- events, messages, streams, children ---------------------------------------------------------


def test_events_set_from_the_cut_on_roll_back_to_their_earlier_value(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()

    @DBOS.step()
    def set_inside_a_step(value: str) -> None:
        DBOS.set_event("from-step", value)

    @DBOS.workflow()
    def publisher() -> str:
        runs["publisher"] += 1
        DBOS.set_event("below", "kept")
        DBOS.set_event("both", "old")
        if runs["publisher"] == 1:
            DBOS.set_event("both", "new")
            DBOS.set_event("above", "doomed")
            set_inside_a_step("doomed too")
            return "first"
        DBOS.set_event("both", "republished")
        return "second"

    workflow_id = _run(publisher)
    assert DBOS.get_all_events(workflow_id) == {
        "below": "kept", "both": "new", "above": "doomed", "from-step": "doomed too",
    }  # fmt: skip
    cut = _positions(workflow_id, "DBOS.setEvent")[2]  # the second value of "both"

    with _held_queue("events-gate"):
        DBOS.rewind_workflow(workflow_id, start_step=cut, queue_name="events-gate")
        assert DBOS.get_all_events(workflow_id) == {"below": "kept", "both": "old"}
        assert DBOS.get_event(workflow_id, "both", timeout_seconds=0) == "old"
        assert DBOS.get_event(workflow_id, "above", timeout_seconds=0) is None

    assert DBOS.retrieve_workflow(workflow_id).get_result() == "second"
    assert DBOS.get_all_events(workflow_id) == {"below": "kept", "both": "republished"}


def test_messages_received_from_the_cut_on_or_never_received_are_dropped(
    dbos: type[DBOS],
) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def receiver() -> str:
        runs["receiver"] += 1
        first = DBOS.recv("cmd", timeout_seconds=WAIT)
        second = DBOS.recv("cmd", timeout_seconds=WAIT)
        return f"{first}{second}:{runs['receiver']}"

    with SetWorkflowID("inbox"):
        handle = DBOS.start_workflow(receiver)
    DBOS.send("inbox", "a", "cmd")
    DBOS.send("inbox", "b", "cmd")
    assert handle.get_result() == "ab:1"
    DBOS.send("inbox", "stray", "cmd")  # arrives after the end: never received
    second_recv = _positions("inbox", "DBOS.recv")[1]

    with _held_queue("inbox-gate"):
        DBOS.rewind_workflow("inbox", start_step=second_recv, queue_name="inbox-gate")
        DBOS.send("inbox", "c", "cmd")  # what the second recv gets when it runs again

    assert DBOS.retrieve_workflow("inbox").get_result() == "ac:2"


def test_messages_sent_from_the_cut_on_are_sent_again(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def listener() -> list[str]:
        return [DBOS.recv("greet", timeout_seconds=WAIT) for _ in range(2)]

    @DBOS.workflow()
    def greeter(to: str) -> None:
        DBOS.send(to, "hello", "greet")

    with SetWorkflowID("listener"):
        listening = DBOS.start_workflow(listener)
    greeter_id = _run(greeter, "listener")
    wait_until(lambda: _positions("listener", "DBOS.recv"), what="the first message taken")
    DBOS.rewind_workflow(greeter_id).get_result()
    assert listening.get_result() == ["hello", "hello"]


def test_a_rewound_stream_keeps_its_entries_and_loses_its_close(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def writer() -> str:
        runs["writer"] += 1
        DBOS.write_stream("out", f"v{runs['writer']}")
        DBOS.close_stream("out")
        return f"run{runs['writer']}"

    workflow_id = _run(writer)
    reader = DBOS.read_stream(workflow_id, "out")
    assert next(reader) == "v1"  # read ahead together with the close, which a rewind drops

    assert DBOS.rewind_workflow(workflow_id).get_result() == "run2"
    assert list(reader) == ["v2"]
    assert list(DBOS.read_stream(workflow_id, "out")) == ["v1", "v2"]

    # Cut past the close: its step stays, nothing writes it again, so it stays.
    assert DBOS.rewind_workflow(workflow_id, start_step=3).get_result() == "run3"
    assert list(DBOS.read_stream(workflow_id, "out")) == ["v1", "v2"]


def test_a_rewound_parent_adopts_the_child_it_started_past_the_cut(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def child(n: int) -> int:
        runs["child"] += 1
        return n * 2

    @DBOS.workflow()
    def parent() -> int:
        runs["parent"] += 1
        return DBOS.start_workflow(child, 21).get_result() + runs["parent"]

    with SetWorkflowID("parent"):
        assert parent() == 43
    assert DBOS.rewind_workflow("parent").get_result() == 44
    assert runs == {"parent": 2, "child": 1}  # the child ran once: its outcome is taken

    # To run the child again too, rewind it first.
    assert DBOS.rewind_workflow("parent-1").get_result() == 42
    assert runs["child"] == 2


# -- where it runs ---------------------------------------------------------------------------------


def test_a_rewind_onto_a_queue_partition_and_version(dbos: type[DBOS]) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def counter() -> int:
        runs["counter"] += 1
        return runs["counter"]

    DBOS.register_queue("parts", partition_concurrency=1)
    workflow_id = _run(counter)
    handle = DBOS.rewind_workflow(workflow_id, queue_name="parts", queue_partition_key="k1")
    assert handle.get_result() == 2
    status = handle.get_status()
    assert (status.queue_name, status.queue_partition_key) == ("parts", "k1")

    # Recorded with a version no process runs, it waits on its queue.
    version = status.app_version
    DBOS.register_queue("versions")
    DBOS.rewind_workflow(workflow_id, queue_name="versions", application_version="elsewhere")
    later = DBOS.enqueue_workflow("versions", counter)
    assert later.get_result() == 3  # the queue was served: the rewound workflow was passed over
    status = handle.get_status()
    assert (status.status, status.app_version) == ("ENQUEUED", "elsewhere")
    with pytest.raises(DBOSException, match="ENQUEUED"):
        DBOS.rewind_workflow(workflow_id, application_version=version)
    DBOS.cancel_workflow(workflow_id)
    assert DBOS.rewind_workflow(workflow_id, application_version=version).get_result() == 4
    status = handle.get_status()
    assert (status.queue_name, status.queue_partition_key) == (INTERNAL_QUEUE_NAME, None)


def test_transactions_on_an_application_database_run_again(db_url: str, other_db_url: str) -> None:
    DBOS(config=make_config(db_url, application_database_url=other_db_url))
    DBOS.launch()
    engine = sa.create_engine(sqlalchemy_url(other_db_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE notes (body TEXT)"))

        @DBOS.transaction()
        def add_note(body: str) -> None:
            DBOS.sql_session.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})

        @DBOS.workflow()
        def flow() -> None:
            add_note("first")
            add_note("second")

        workflow_id = _run(flow)
        # Its checkpoints stay in the application database: a rerun would replay them.
        DBOS.rewind_workflow(workflow_id, start_step=2).get_result()
        with engine.connect() as conn:
            notes = conn.execute(sa.text("SELECT body FROM notes ORDER BY body")).scalars()
            assert list(notes) == ["first", "second", "second"]
    finally:
        engine.dispose()
        DBOS.destroy(destroy_registry=True)


def test_datasource_transactions_run_again(db_url: str, other_db_url: str) -> None:
    DBOS(config=make_config(db_url))
    own = SQLAlchemyDatasource.create(other_db_url)
    own_async = asyncio.run(AsyncSQLAlchemyDatasource.create(other_db_url))
    DBOS.launch()
    engine = sa.create_engine(sqlalchemy_url(other_db_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE notes (body TEXT)"))

        @own.transaction
        def add_note(body: str) -> None:
            own.sql_session().execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})

        @own_async.transaction
        async def add_note_async(body: str) -> None:
            session = own_async.sql_session()
            await session.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})

        @DBOS.workflow()
        def flow() -> None:
            add_note("a")
            add_note("b")

        @DBOS.workflow()
        async def flow_async() -> None:
            await add_note_async("x")
            await add_note_async("y")

        sync_id, async_id = _run(flow), _run(flow_async)
        DBOS.rewind_workflow(sync_id, start_step=2).get_result()
        DBOS.rewind_workflow(async_id, start_step=2).get_result()

        async def rewind_async() -> None:
            await (await DBOS.rewind_workflow_async(async_id)).get_result()

        asyncio.run(rewind_async())
        with engine.connect() as conn:
            notes = conn.execute(sa.text("SELECT body FROM notes ORDER BY body")).scalars()
            assert list(notes) == ["a", "b", "b", "x", "x", "y", "y", "y"]
    finally:
        engine.dispose()
        DBOS.destroy(destroy_registry=True)


# -- the other forms -------------------------------------------------------------------------------


def test_the_client_and_the_async_forms(dbos: type[DBOS], db_url: str) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def counter(name: str) -> int:
        runs[name] += 1
        return runs[name]

    client = DBOSClient(system_database_url=db_url)
    try:
        sync_id, async_id = _run(counter, "sync"), _run(counter, "async")
        assert client.rewind_workflow(sync_id).get_result() == 2
        assert client.rewind_workflow(sync_id, start_step=1).get_result() == 3
        with pytest.raises(DBOSNonExistentWorkflowError):
            client.rewind_workflow("no-such-workflow")

        async def rewind_async() -> tuple[int, int]:
            handle = await DBOS.rewind_workflow_async(async_id, start_step=1)
            from_facade = await handle.get_result()
            client_handle = await client.rewind_workflow_async(async_id)
            return from_facade, await client_handle.get_result()

        assert asyncio.run(rewind_async()) == (2, 3)
    finally:
        client.destroy()


def test_a_rewind_from_a_workflow_is_a_step_and_is_not_repeated_by_a_replay(
    dbos: type[DBOS], db_url: str
) -> None:
    runs: Counter[str] = Counter()

    @DBOS.workflow()
    def target() -> int:
        runs["target"] += 1
        return runs["target"]

    @DBOS.workflow()
    def repairer(workflow_id: str) -> int:
        runs["repairer"] += 1
        result: int = DBOS.rewind_workflow(workflow_id).get_result()
        return result

    target_id = _run(target)
    with SetWorkflowID("repairer"):
        assert repairer(target_id) == 2
    names = [s["function_name"] for s in DBOS.list_workflow_steps("repairer")]
    assert names[0] == "DBOS.rewindWorkflow"

    mark_pending(db_url, "repairer")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("repairer").get_result() == 2
    assert runs == {"target": 2, "repairer": 2}  # the body ran again; the rewind did not
    rows = run_sql(
        db_url, "SELECT status FROM {p}workflow_status WHERE workflow_id = :w", w=target_id
    )
    assert rows[0][0] == "SUCCESS"
