"""Notifications are hints: a role that can only connect cannot forge a message or stop the
listener, and a real send still wakes the receiver."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from perdure import DBOS, DBOSClient
from perdure.storage.postgres.connect import psycopg_conninfo
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import run_sql

pytestmark = pytest.mark.single_backend(
    "postgres", reason="SQLite has no notifications: its waiters are woken in memory"
)


@pytest.fixture
def intruder(postgres_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection acting as a role that may connect but holds no right on Perdure's tables."""
    role = f"intruder_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(psycopg_conninfo(postgres_url), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            conn.execute(f"SET ROLE {role}")
            yield conn
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f"DROP ROLE {role}")


def test_forged_notifications_neither_deliver_a_message_nor_stop_the_listener(
    postgres_url: str, intruder: psycopg.Connection[tuple[object, ...]]
) -> None:
    # Slow polling: only a notification could wake the receiver within the test's bounds.
    DBOS(config=make_config(postgres_url, notification_listener_polling_interval_sec=30))

    @DBOS.workflow()
    def approval() -> object:
        return DBOS.recv("decision", timeout_seconds=60)

    DBOS.launch()
    try:
        runtime = DBOS._runtime
        assert runtime is not None
        assert runtime.wake_ups is not None
        handle = DBOS.start_workflow(approval)
        wid = handle.workflow_id
        wait_until(lambda: run_sql(postgres_url, "SELECT COUNT(*) FROM {p}recv_waiters")[0][0] == 1)
        [(position, token)] = run_sql(
            postgres_url,
            "SELECT function_id, owner_token FROM {p}recv_waiters WHERE workflow_id = :w",
            w=wid,
        )
        for table in ("notifications", "notification_key"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                intruder.execute(f"SELECT * FROM perdure.{table}")
        forged = base64.b64encode(b'"forged"').decode()
        signed = f"recv|{wid}|{position}|{token}|{base64.b64encode(b'json').decode()}|{forged}"
        notes = [
            f"recv|{wid}|{position}|json|{forged}",  # the unsigned format of earlier versions
            f"{signed}|{'0' * 64}",  # the signed format, with a MAC made without the key
            f"{signed}|",
            f"recv|{wid}|{position}",  # a hint of a message never sent
            f"msg|{wid}|decision",
            "*",
            "",
            "recv|",
            "x" * 7999,
            "\u00e9\u4e16|\ufffd",
            "end-of-forgeries",
        ]
        for note in notes:
            intruder.execute("SELECT pg_notify('perdure', %s)", (note,))
        # Notes from one session arrive in order: once the last is read, all of them were.
        wait_until(lambda: runtime.wake_ups is not None and runtime.wake_ups.ignored == 4)
        assert handle.get_status().status == "PENDING"
        received = run_sql(
            postgres_url,
            "SELECT COUNT(*) FROM {p}operation_outputs WHERE workflow_id = :w AND function_id = :p",
            w=wid,
            p=position,
        )
        assert received[0][0] == 0
        listener = runtime._listener
        assert listener is not None
        assert getattr(listener, "reconnects", 0) == 0
        notes_read = runtime._store.database.notes  # this process counted the forged MACs
        assert notes_read.forged == 2

        # A real send from elsewhere (a client: only a notification reaches this process).
        client = DBOSClient(postgres_url)
        sent = time.monotonic()
        try:
            client.send(wid, {"ok": True}, "decision")
        finally:
            client.destroy()
        assert handle.get_result() == {"ok": True}
        assert time.monotonic() - sent < 20  # woken by the hint, not by the 30 s poll
    finally:
        DBOS.destroy(destroy_registry=True)
