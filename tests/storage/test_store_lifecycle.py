"""The store's life: schema and migrations, reset, close, connections held, notifications."""

from __future__ import annotations

import inspect
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from perdure.error import DBOSInitializationError, DBOSSystemDatabaseError
from perdure.storage import Store, open_store
from perdure.storage.migrations import Migration, load_migrations, pending_migrations
from perdure.storage.records import HandedMessage
from tests.integration.system_tables import run_sql
from tests.storage.store_helpers import start, step_row

LATEST = max(m.version for m in load_migrations("sqlite"))


def test_both_backends_have_the_same_migrations() -> None:
    assert [m.version for m in load_migrations("postgres")] == [
        m.version for m in load_migrations("sqlite")
    ]


def test_the_schema_version_is_none_until_migrated(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert store.schema_version() is None
        store.migrate()
        assert store.schema_version() == LATEST
        store.migrate()  # idempotent
        assert store.schema_version() == LATEST
    finally:
        store.close()


def test_concurrent_migrations_serialise(db_url: str) -> None:
    stores = [open_store(db_url) for _ in range(4)]  # like four processes launching at once
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def migrate(target: Store) -> None:
        barrier.wait()
        try:
            target.migrate()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == []
    again = open_store(db_url)
    try:
        assert again.schema_version() == LATEST
        start(again, "w")
    finally:
        again.close()


def test_a_schema_newer_than_the_code_is_refused(store: Store) -> None:
    known = [Migration(1, "0001_initial.sql", ("SELECT 1",))]
    assert pending_migrations(known, 0, url="x") == known
    assert pending_migrations(known, 1, url="x") == []
    run_sql(store.url, "INSERT INTO {p}schema_migrations (version) VALUES (:v)", v=LATEST + 1)
    with pytest.raises(DBOSInitializationError, match="newer"):
        store.migrate()


def test_reset_drops_the_schema_and_a_migration_builds_it_again(store: Store) -> None:
    start(store, "w")
    store.reset()
    assert store.schema_version() is None
    store.migrate()
    assert store.schema_version() == LATEST
    assert store.get_workflow("w") is None


@pytest.mark.single_backend(
    "sqlite", reason="on PostgreSQL Perdure owns a whole schema; only SQLite shares its file"
)
def test_reset_keeps_the_applications_tables_in_a_shared_sqlite_file(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE greetings (name TEXT)")
        conn.execute("INSERT INTO greetings VALUES ('ann')")
    conn.close()
    store = open_store(sqlite_url)
    store.migrate()
    store.reset()
    store.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        assert {r[0] for r in rows} == {"greetings"}
        assert conn.execute("SELECT name FROM greetings").fetchall() == [("ann",)]
    conn.close()


def test_a_closed_store_refuses_every_call(db_url: str) -> None:
    store = open_store(db_url)
    store.migrate()
    start(store, "w")
    store.close()
    with pytest.raises(DBOSSystemDatabaseError):
        store.get_workflow("w")
    with pytest.raises(DBOSSystemDatabaseError):
        store.record_step(step_row("w", 0, 1))
    with pytest.raises(DBOSSystemDatabaseError):
        store.list_schedules()


def test_statements_run_inside_held_and_released_connections(store: Store) -> None:
    token = start(store, "w")
    with store.hold_connection():
        assert store.record_step(step_row("w", 0, token)) is None
        with store.hold_connection():  # nested: the same connection
            assert store.record_step(step_row("w", 1, token)) is None
            with store.released():  # waiting: each statement borrows one
                assert store.record_step(step_row("w", 2, token)) is None
                with store.released():
                    assert store.get_workflow("w") is not None
            assert store.record_step(step_row("w", 3, token)) is None
        assert store.record_step(step_row("w", 4, token)) is None
    with store.released():  # holding nothing to begin with
        assert store.record_step(step_row("w", 5, token)) is None
    assert [s.function_id for s in store.load_steps("w")] == list(range(6))


def test_held_connections_of_many_threads_do_not_starve_each_other(db_url: str) -> None:
    store = open_store(db_url, max_connections=2)
    store.migrate()
    tokens = {f"w{n}": start(store, f"w{n}") for n in range(6)}
    errors: list[BaseException] = []
    waiting = threading.Barrier(len(tokens))

    def run(workflow_id: str) -> None:
        try:
            with store.hold_connection():
                store.record_step(step_row(workflow_id, 0, tokens[workflow_id]))
                with store.released():  # all wait at once, holding no connection
                    waiting.wait(30)
                store.record_step(step_row(workflow_id, 1, tokens[workflow_id]))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert all(len(store.load_steps(w)) == 2 for w in tokens)
    store.close()


@pytest.mark.single_backend("sqlite", reason="SQLite has no notifications: waiters poll")
def test_sqlite_has_no_notifications(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        assert store.listen(lambda note: None, lambda: None) is None
    finally:
        store.close()


@pytest.mark.single_backend("postgres", reason="only PostgreSQL has notifications (NOTIFY)")
def test_postgres_notifications_reach_the_listener(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.migrate()
    notes: list[tuple[str, HandedMessage | None]] = []
    noted, gap = threading.Event(), threading.Event()

    def on_note(name: str, handed: HandedMessage | None) -> None:
        notes.append((name, handed))
        noted.set()

    listening = store.listen(on_note, gap.set)
    try:
        assert listening is not None
        assert gap.wait(30)  # connected: what was written before may have been missed
        run_sql(postgres_url, "NOTIFY perdure, 'x'")
        assert noted.wait(30)
        assert notes == [("x", None)]
    finally:
        if listening is not None:
            listening.stop()
        store.close()


def test_every_method_of_the_store_contract_is_exercised() -> None:
    methods = {
        name
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("__")
    }
    assert len(methods) > 30
    suite = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    unexercised = sorted(m for m in methods if not re.search(rf"\.{m}\(", suite))
    assert unexercised == []
