"""A failover seen from one database: connections cut, then refused writes, then a primary again.

The test drops every connection of the database and makes new sessions read-only (what a
process sees while its connections land on a standby), lets the workflow try its checkpoint
and its transaction there, then makes the database writable again and drops the connections
once more. Read-only errors are waited out like a lost connection: the workflow finishes,
its transaction commits once, and no error is recorded as anything's outcome. Also: a launch
while the server is unreachable waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from perdure import DBOS, SetWorkflowID
from perdure.storage.postgres.connect import psycopg_conninfo
from tests.faults.proxy import FaultProxy
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import run_sql

pytestmark = pytest.mark.single_backend(
    "postgres", reason="failovers, read-only standbys and unreachable servers are PostgreSQL's"
)

WAIT = 30.0


def _cut_connections(server_url: str, database: str, *, read_only: bool) -> None:
    """Make new sessions of ``database`` read-only (or not), and drop the current ones."""
    with psycopg.connect(psycopg_conninfo(server_url), autocommit=True) as admin:
        setting = "on" if read_only else "off"
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
                sql.Identifier(database), sql.SQL(setting)
            )
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


@pytest.fixture
def launched(postgres_url: str) -> Iterator[type[DBOS]]:
    DBOS(config=make_config(postgres_url))
    DBOS.launch()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def test_a_failover_through_a_read_only_node_is_waited_out(
    launched: type[DBOS],
    postgres_url: str,
    postgres_server_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_sql(postgres_url, "CREATE TABLE ledger (entry TEXT)")
    gate, inside = threading.Event(), threading.Event()
    runs: list[str] = []

    @DBOS.step()
    def hold() -> None:
        inside.set()
        gate.wait(WAIT)

    @DBOS.transaction()
    def book(entry: str) -> str:
        runs.append(entry)
        DBOS.sql_session.execute(sa.text("INSERT INTO ledger VALUES (:e)"), {"e": entry})
        return entry

    @DBOS.workflow()
    def flow() -> str:
        hold()
        return book("paid")

    with SetWorkflowID("failover"):
        handle = DBOS.start_workflow(flow)
    assert inside.wait(WAIT)
    database = str(conninfo_to_dict(postgres_url)["dbname"])
    _cut_connections(postgres_server_url, database, read_only=True)
    try:
        with caplog.at_level(logging.WARNING):
            gate.set()  # the checkpoint of hold() now meets a read-only database
            wait_until(
                lambda: any("read-only" in r.getMessage() for r in caplog.records),
                what="a write refused by the read-only database",
            )
    finally:
        _cut_connections(postgres_server_url, database, read_only=False)
    assert handle.get_result() == "paid"
    status = handle.get_status()
    assert (status.status, status.error) == ("SUCCESS", None)
    assert [tuple(r) for r in run_sql(postgres_url, "SELECT entry FROM ledger")] == [("paid",)]
    assert runs.count("paid") >= 1  # it may have run again; it committed once


def test_a_launch_waits_for_a_server_that_is_not_reachable_yet(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    info = conninfo_to_dict(postgres_url)
    with FaultProxy(str(info.get("host")), int(info.get("port") or 5432)) as proxy:
        proxy.refuse()
        DBOS(config=make_config(proxy.url_for(postgres_url), system_database_wait_sec=WAIT))
        launched = threading.Event()
        failure: list[BaseException] = []

        def launch() -> None:
            try:
                DBOS.launch()
                launched.set()
            except BaseException as exc:  # reported by the assertions below
                failure.append(exc)

        with caplog.at_level(logging.WARNING):
            thread = threading.Thread(target=launch)
            thread.start()
            wait_until(
                lambda: any("Waiting up to" in r.getMessage() for r in caplog.records),
                what="the launch to say it waits",
            )
            assert not launched.is_set()
            proxy.heal()
            thread.join(WAIT)
        try:
            assert failure == []
            assert launched.is_set()

            @DBOS.workflow()
            def hello() -> str:
                return "hi"

            assert hello() == "hi"
        finally:
            DBOS.destroy(destroy_registry=True)
