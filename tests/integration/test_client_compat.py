"""`DBOSClient`'s remaining DBOS calls: writes inside the caller's SQLAlchemy transaction,
``wait_first``, batch deletes, attribute updates, ``check_connection``, lazy clients and DBOS
2.31's constructor forms."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from perdure import DBOS, DBOSClient, Queue, SendMessage
from perdure.client import EnqueueOptions
from perdure.config_compat import dbos2_system_database_url
from perdure.error import (
    DBOSException,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
)
from perdure.storage import open_store
from perdure.storage.postgres.connect import psycopg_conninfo
from tests.integration.system_tables import relaunch

WAIT = 10.0
QUEUE = "compat"


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    # On SQLite the app sees the client's writes by polling: make it poll often.
    relaunch(db_url, notification_listener_polling_interval_sec=0.05)
    opened = DBOSClient(system_database_url=db_url)
    yield opened
    opened.destroy()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """The application's own engine on the system database."""
    made = sa.create_engine(_sqlalchemy_url(db_url))
    yield made
    made.dispose()


def _sqlalchemy_url(db_url: str, *, asynchronous: bool = False) -> str:
    if db_url.startswith("sqlite"):
        return db_url.replace("sqlite://", "sqlite+aiosqlite://") if asynchronous else db_url
    return "postgresql+psycopg://" + db_url.split("://", 1)[1]


def _drop_database(url: str) -> None:
    """Make the system database at ``url`` disappear (its file, or the database)."""
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink()
        return
    conninfo = psycopg.conninfo.conninfo_to_dict(psycopg_conninfo(url))
    name = conninfo.pop("dbname")
    conninfo["dbname"] = "postgres"
    with psycopg.connect(psycopg.conninfo.make_conninfo("", **conninfo), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            psycopg.sql.Identifier(str(name))
        ))  # fmt: skip


def _job_and_queue() -> None:
    @DBOS.workflow(name="double")
    def double(n: int) -> int:
        return 2 * n

    Queue(QUEUE)


def _receiver() -> Any:
    @DBOS.workflow(name="receive_two")
    def receive_two(topic: str) -> list[Any]:
        return [DBOS.recv(topic, timeout_seconds=WAIT) for _ in range(2)]

    return receive_two


def _options(workflow_id: str, **more: Any) -> EnqueueOptions:
    """Enqueue options of ``double`` on the served queue, under ``workflow_id``."""
    options: EnqueueOptions = {"workflow_name": "double", "queue_name": QUEUE}
    return {**options, "workflow_id": workflow_id, **more}  # type: ignore[typeddict-item]


def _exists(client: DBOSClient, workflow_id: str) -> bool:
    return bool(client.list_workflows(workflow_ids=[workflow_id]))


# -- enqueue in the caller's transaction ------------------------------------------------------


def test_an_enqueue_in_a_transaction_runs_once_committed(
    client: DBOSClient, engine: sa.Engine
) -> None:
    _job_and_queue()
    with engine.begin() as conn:
        handle = client.enqueue_in_transaction(conn, _options("tx-1"), 21)
        assert not _exists(client, "tx-1")  # other connections see nothing before the commit
    assert handle.get_result(timeout_sec=WAIT) == 42

    with engine.connect() as conn:  # SQLAlchemy 2's "commit as you go"
        second = client.enqueue_in_transaction(conn, _options("tx-2"), 2)
        conn.commit()
    with Session(engine) as session:
        third = client.enqueue_in_transaction(session, _options("tx-3"), 3)
        session.commit()
    assert (second.get_result(timeout_sec=WAIT), third.get_result(timeout_sec=WAIT)) == (4, 6)


def test_a_rolled_back_enqueue_leaves_no_trace(client: DBOSClient, engine: sa.Engine) -> None:
    _job_and_queue()
    with engine.connect() as conn:
        client.enqueue_in_transaction(conn, _options("undone"), 1)
        conn.rollback()
    with Session(engine) as session:
        client.enqueue_in_transaction(session, _options("undone-too"), 1)
    # Committed after the rolled-back ones: once it has run, they would have been seen.
    with engine.begin() as conn:
        marker = client.enqueue_in_transaction(conn, _options("kept"), 5)
    assert marker.get_result(timeout_sec=WAIT) == 10
    assert [s.workflow_id for s in client.list_workflows()] == ["kept"]


def test_a_refused_enqueue_leaves_the_transaction_usable(
    client: DBOSClient, engine: sa.Engine
) -> None:
    _job_and_queue()
    # A queue no process serves: its workflow stays ENQUEUED, holding its deduplication ID.
    parked = {"queue_name": "unserved", "deduplication_id": "d"}
    holder = client.enqueue(_options("holder", **parked), 1)
    with engine.begin() as conn:
        with pytest.raises(DBOSQueueDeduplicatedError):
            client.enqueue_in_transaction(conn, _options("refused", **parked), 2)
        again = _options("attached", **parked, duplication_policy="return-existing")
        attached = client.enqueue_in_transaction(conn, again, 3)
        after = client.enqueue_in_transaction(conn, _options("after"), 4)
    assert attached.workflow_id == holder.workflow_id
    assert after.get_result(timeout_sec=WAIT) == 8
    assert not _exists(client, "refused")
    assert not _exists(client, "attached")


def test_enqueue_in_an_async_transaction_through_run_sync(client: DBOSClient, db_url: str) -> None:
    _job_and_queue()
    options = _options("from-async")

    async def enqueue() -> str:
        engine = create_async_engine(_sqlalchemy_url(db_url, asynchronous=True))
        try:
            async with engine.begin() as conn:
                handle = await conn.run_sync(
                    lambda sync: client.enqueue_in_transaction(sync, options, 50)
                )
        finally:
            await engine.dispose()
        return handle.workflow_id

    workflow_id = asyncio.run(enqueue())
    assert client.retrieve_workflow(workflow_id).get_result(timeout_sec=WAIT) == 100


def test_a_connection_that_cannot_carry_the_rows_is_refused(
    client: DBOSClient, other_db_url: str
) -> None:
    _job_and_queue()
    options = _options("nowhere")
    elsewhere = sa.create_engine(_sqlalchemy_url(other_db_url))
    try:
        with elsewhere.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE orders (id INTEGER)")
            with pytest.raises(DBOSException, match="must be on the client's system database"):
                client.enqueue_in_transaction(conn, options, 1)
            conn.exec_driver_sql("INSERT INTO orders VALUES (1)")  # still usable
        with elsewhere.connect() as conn:
            assert conn.exec_driver_sql("SELECT id FROM orders").scalars().all() == [1]
    finally:
        elsewhere.dispose()
    with pytest.raises(TypeError, match="SQLAlchemy Connection or Session"):
        client.enqueue_in_transaction(object(), options, 1)  # type: ignore[arg-type]
    assert not _exists(client, "nowhere")


def test_an_autocommit_connection_is_refused(client: DBOSClient, engine: sa.Engine) -> None:
    _job_and_queue()
    options = _options("at-once")
    autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as conn, pytest.raises(DBOSException, match="autocommit"):
        client.enqueue_in_transaction(conn, options, 1)
    assert not _exists(client, "at-once")


# -- sends in the caller's transaction --------------------------------------------------------


def test_a_send_in_a_transaction_is_received_once_committed(
    client: DBOSClient, engine: sa.Engine
) -> None:
    receive_two = _receiver()
    handle = DBOS.start_workflow(receive_two, "t")
    with engine.connect() as conn:
        client.send_in_transaction(conn, handle.workflow_id, "rolled back", "t")
        conn.rollback()
    with engine.begin() as conn:
        client.send_in_transaction(conn, handle.workflow_id, "first", "t", idempotency_key="k")
        client.send_in_transaction(conn, handle.workflow_id, "first", "t", idempotency_key="k")
    client.send(handle.workflow_id, "second", "t")  # queued behind the committed one
    assert handle.get_result() == ["first", "second"]


def test_a_bulk_send_in_a_transaction_is_all_or_nothing(
    client: DBOSClient, engine: sa.Engine
) -> None:
    receive_two = _receiver()
    first = DBOS.start_workflow(receive_two, "t")
    second = DBOS.start_workflow(receive_two, "t")
    with engine.begin() as conn:
        mixed = [SendMessage(first.workflow_id, "lost", "t"), SendMessage("no-such", "x", "t")]
        with pytest.raises(DBOSNonExistentWorkflowError):
            client.send_bulk_in_transaction(conn, mixed)
        client.send_bulk_in_transaction(
            conn,
            [SendMessage(first.workflow_id, "a1", "t"), SendMessage(second.workflow_id, "b1", "t")],
        )
        client.send_in_transaction(conn, first.workflow_id, "a2", "t")
        client.send_in_transaction(conn, second.workflow_id, "b2", "t")
    assert first.get_result() == ["a1", "a2"]
    assert second.get_result() == ["b1", "b2"]


# -- wait_first, deletes, attributes ----------------------------------------------------------


def test_wait_first_returns_the_first_workflow_to_end(client: DBOSClient) -> None:
    @DBOS.workflow()
    def wait_for(topic: str) -> str:
        return str(DBOS.recv(topic, timeout_seconds=WAIT * 3))

    slow = client.retrieve_workflow(DBOS.start_workflow(wait_for, "slow").workflow_id)
    fast = client.retrieve_workflow(DBOS.start_workflow(wait_for, "fast").workflow_id)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.wait_first, [slow, fast])
        client.send(fast.workflow_id, "go", "fast")
        assert waiting.result(timeout=WAIT) is fast
    client.send(slow.workflow_id, "go", "slow")
    assert slow.get_result(timeout_sec=WAIT) == "go"
    assert client.wait_first([fast, slow]) is fast  # both ended: the first in the list

    async def first_async() -> Any:
        handles = [await client.retrieve_workflow_async(h.workflow_id) for h in (slow, fast)]
        return (await client.wait_first_async(handles)) is handles[0]

    assert asyncio.run(first_async())
    with pytest.raises(ValueError, match="at least one"):
        client.wait_first([])
    with pytest.raises(ValueError, match="same workflow twice"):
        client.wait_first([fast, fast])
    client.delete_workflows([fast.workflow_id])
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.wait_first([fast])


def test_delete_workflows_and_update_attributes(client: DBOSClient) -> None:
    @DBOS.workflow()
    def child() -> None:
        pass

    @DBOS.workflow()
    def parent() -> None:
        child()

    ids = [DBOS.start_workflow(parent).workflow_id for _ in range(3)]
    for workflow_id in ids:
        client.retrieve_workflow(workflow_id).get_result(timeout_sec=WAIT)

    client.update_workflow_attributes(ids[0], {"tier": 1})
    client.update_workflow_attributes(ids[0], {"region": "eu"}, merge=True)
    assert client.retrieve_workflow(ids[0]).get_status().attributes == {"tier": 1, "region": "eu"}
    asyncio.run(client.update_workflow_attributes_async(ids[0], None))
    assert client.retrieve_workflow(ids[0]).get_status().attributes is None
    with pytest.raises(DBOSException, match="needs a dict"):
        client.update_workflow_attributes(ids[0], None, merge=True)
    client.update_workflow_attributes("no-such-workflow", {"a": 1})  # left alone, as in DBOS

    everything = len(client.list_workflows())
    client.delete_workflows([ids[0], "no-such-workflow"])
    assert len(client.list_workflows()) == everything - 1  # its child stays
    asyncio.run(client.delete_workflows_async([ids[1], ids[2]], delete_children=True))
    assert [s.workflow_id for s in client.list_workflows()] == [f"{ids[0]}-1"]


# -- the connection ---------------------------------------------------------------------------


def test_check_connection_fails_once_the_database_is_gone(db_url: str) -> None:
    store = open_store(db_url)
    store.migrate()
    store.close()
    opened = DBOSClient(system_database_url=db_url)
    try:
        opened.check_connection()
        asyncio.run(opened.check_connection_async())
        _drop_database(db_url)
        with pytest.raises(DBOSInitializationError, match="system database"):
            opened.check_connection()
        with pytest.raises(DBOSInitializationError, match="system database"):
            asyncio.run(opened.check_connection_async())
    finally:
        opened.destroy()


@pytest.fixture
def unreachable_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A URL of ``db_url``'s backend where no database can be: a file in a directory that
    does not exist, or a port on 127.0.0.1 held (bound, not listening) for the test."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'no-such-directory' / 'system.sqlite'}"
        return
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        parts = urlsplit(db_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
        yield urlunsplit(parts._replace(netloc=netloc))


def test_a_lazy_client_constructs_without_its_database(unreachable_url: str) -> None:
    lazy = DBOSClient(system_database_url=unreachable_url, lazy=True)
    started = time.monotonic()
    with pytest.raises(DBOSInitializationError, match="system database"):
        lazy.check_connection()
    with pytest.raises(DBOSInitializationError, match="system database"):
        asyncio.run(lazy.check_connection_async())
    # At once: an eager constructor would wait up to 10s for a server that is starting.
    assert time.monotonic() - started < 5.0
    lazy.destroy()  # nothing to close
    with pytest.raises(DBOSException, match="destroyed before it ever connected"):
        lazy.list_workflows()


def test_a_lazy_client_connects_on_first_use(dbos: type[DBOS], db_url: str) -> None:
    relaunch(db_url, notification_listener_polling_interval_sec=0.05)
    _job_and_queue()
    lazy = DBOSClient(system_database_url=db_url, lazy=True, use_listen_notify=True)
    try:
        handle = lazy.enqueue(_options("lazy-1"), 21)
        assert handle.get_result(timeout_sec=WAIT) == 42
        assert [s.workflow_id for s in lazy.list_workflows()] == ["lazy-1"]
        lazy.check_connection()
    finally:
        lazy.destroy()
    second = DBOSClient(system_database_url=db_url, lazy=True)
    try:
        second.check_connection()  # connects here
        assert [s.workflow_id for s in second.list_workflows()] == ["lazy-1"]
    finally:
        second.destroy()


def test_a_lazy_client_connects_once_however_many_threads_first_use_it(db_url: str) -> None:
    store = open_store(db_url)
    store.migrate()
    store.close()
    lazy = DBOSClient(system_database_url=db_url, lazy=True)
    threads = 8
    barrier = threading.Barrier(threads)

    def first_use(_: int) -> object:
        barrier.wait(timeout=WAIT)
        return lazy._store  # what every call of the client goes through first

    try:
        with ThreadPoolExecutor(threads) as pool:
            stores = list(pool.map(first_use, range(threads)))
        assert all(s is stores[0] for s in stores)
        assert lazy.list_workflows() == []
    finally:
        lazy.destroy()


@pytest.fixture
def dbos2_app(db_url: str) -> Iterator[str]:
    """Perdure launched with a DBOS 2.x config naming only ``database_url``; yields it."""
    DBOS(config={"name": "perdure-test", "database_url": db_url})
    DBOS.launch()
    yield db_url
    DBOS.destroy(destroy_registry=True)
    system_url = dbos2_system_database_url(db_url)
    if system_url != db_url:
        _drop_database(system_url)


def test_dbos2_constructor_forms_find_the_system_database(
    dbos2_app: str, caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.workflow()
    def greet() -> str:
        return "hi"

    workflow_id = DBOS.start_workflow(greet).workflow_id
    system_url = dbos2_system_database_url(dbos2_app)
    forms: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        ((dbos2_app,), {}),  # DBOS 2.31's positional database_url
        ((), {"database_url": dbos2_app}),
        ((), {"application_database_url": dbos2_app}),
        ((), {"system_database_url": system_url}),
    ]
    for args, kwargs in forms:
        opened = DBOSClient(*args, **kwargs)
        try:
            assert opened.retrieve_workflow(workflow_id).get_result(timeout_sec=WAIT) == "hi"
        finally:
            opened.destroy()

    caplog.clear()
    both = DBOSClient(system_database_url=system_url, application_database_url=dbos2_app)
    both.destroy()
    assert "ignores application_database_url" in caplog.text


def test_a_dbos2_url_without_a_system_database_is_refused(db_url: str) -> None:
    open_store(db_url).close()  # the database exists (an empty SQLite file), with no schema
    with pytest.raises(DBOSInitializationError, match="no Perdure schema"):
        DBOSClient(database_url=db_url)
