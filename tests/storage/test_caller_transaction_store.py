"""The store on a caller's connection: its writes commit or roll back with the caller's
transaction, a refused statement leaves that transaction usable, and only a connection to the
same system database, outside autocommit, is accepted."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from perdure.error import DBOSException, DBOSQueueDeduplicatedError
from perdure.storage import Store
from perdure.storage.postgres.connect import psycopg_conninfo
from perdure.storage.records import Delivery
from tests.storage.store_helpers import recv_step, send, start, step_outputs, workflow_row


@dataclass
class Caller:
    """A DB-API connection the application holds, and how to ask its driver whether it has
    begun a transaction."""

    conn: Any
    in_transaction: Callable[[], bool]

    def on(self, store: Store) -> Store:
        return store.in_caller_transaction(self.conn, in_transaction=self.in_transaction)


def _connect(url: str, *, autocommit: bool = False) -> Caller:
    if url.startswith("sqlite"):
        lite = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None if autocommit else "DEFERRED"
        )
        return Caller(lite, lambda: lite.in_transaction)
    conn = psycopg.connect(psycopg_conninfo(url), autocommit=autocommit)
    return Caller(conn, lambda: True)  # read on SQLite only


@pytest.fixture
def caller(store: Store, db_url: str) -> Iterator[Caller]:
    opened = _connect(db_url)
    yield opened
    opened.conn.close()


def test_writes_commit_and_roll_back_with_the_caller(store: Store, caller: Caller) -> None:
    assert caller.on(store).start_workflow(workflow_row("kept")).created
    assert store.get_workflow("kept") is None  # not committed yet
    caller.conn.commit()
    assert store.get_workflow("kept") is not None

    assert caller.on(store).start_workflow(workflow_row("undone")).created
    caller.conn.rollback()
    assert store.get_workflow("undone") is None


def test_a_hand_off_commits_with_the_caller_and_not_without(store: Store, caller: Caller) -> None:
    token = start(store, "w")
    assert store.receive_message("w", "t", recv_step("w", 0, token)) is None  # registered
    assert send(caller.on(store), "m0", b"0") == Delivery("sent", 0)
    caller.conn.rollback()
    assert step_outputs(store, "w") == []  # the hand-off was undone; the receiver still waits
    assert send(caller.on(store), "m1", b"1") == Delivery("sent", 0)
    assert step_outputs(store, "w") == []
    caller.conn.commit()
    assert step_outputs(store, "w") == [(0, b"1")]


def test_a_refused_statement_leaves_the_transaction_usable(store: Store, caller: Caller) -> None:
    held: dict[str, Any] = {"queue_name": "q", "deduplication_id": "d", "status": "ENQUEUED"}
    start(store, "holder", **held)
    on_caller = caller.on(store)
    with pytest.raises(DBOSQueueDeduplicatedError) as refused:
        on_caller.start_workflow(workflow_row("second", **held))
    assert refused.value.holder_workflow_id == "holder"
    assert on_caller.start_workflow(workflow_row("third")).created
    caller.conn.commit()
    assert store.get_workflow("second") is None
    assert store.get_workflow("third") is not None


def test_only_a_transaction_on_the_same_system_database_is_accepted(
    store: Store, db_url: str, other_db_url: str
) -> None:
    autocommit = _connect(db_url, autocommit=True)
    try:
        with pytest.raises(DBOSException, match="autocommit"):
            autocommit.on(store)
    finally:
        autocommit.conn.close()
    elsewhere = _connect(other_db_url)
    try:
        with pytest.raises(DBOSException, match="must be on the client's system database"):
            elsewhere.on(store)
    finally:
        elsewhere.conn.close()
    same = _connect(db_url)
    try:
        with pytest.raises(DBOSException, match="own connections"):
            same.on(store).migrate()
    finally:
        same.conn.close()
