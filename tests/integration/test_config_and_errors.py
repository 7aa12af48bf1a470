"""Lifecycle and configuration errors that need a launch, on both backends where it matters."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from perdure import DBOS, SetWorkflowID, SetWorkflowTimeout, run_dbos_database_migrations
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSBaseException,
    DBOSErrorCode,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
)
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """No Perdure instance and no registrations, before and after the test."""
    DBOS.destroy(destroy_registry=True)
    yield
    DBOS.destroy(destroy_registry=True)


def test_calling_a_workflow_before_configuring_says_what_to_do(unconfigured: None) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    with pytest.raises(DBOSInitializationError) as caught:
        flow()
    message = str(caught.value)
    assert "DBOS(config=" in message
    assert "DBOS.launch()" in message
    with pytest.raises(DBOSInitializationError, match=r"DBOS\(config="):
        DBOS.start_workflow(flow)
    with pytest.raises(DBOSInitializationError, match=r"DBOS\(config="):
        DBOS.get_workflow_status("any")


def test_calling_a_workflow_before_launch_says_to_launch(unconfigured: None, db_url: str) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    DBOS(config=make_config(db_url))
    for attempt in (flow, lambda: DBOS.start_workflow(flow), lambda: DBOS.retrieve_workflow("x")):
        with pytest.raises(DBOSInitializationError, match=r"not launched: call DBOS\.launch\(\)"):
            attempt()
    # Launching afterwards makes the same function usable.
    DBOS.launch()
    assert flow() == 1


def test_calling_a_workflow_after_destroy_is_refused(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    assert flow() == 1
    DBOS.destroy()
    with pytest.raises(DBOSInitializationError, match=r"DBOS\(config="):
        flow()


def test_launch_twice_is_harmless(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def flow() -> str:
        return DBOS.config.name

    DBOS.launch()
    assert flow() == "perdure-test"


def test_unreachable_postgres_fails_launch_with_the_fix_after_its_wait(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nope"
    DBOS(config=make_config(url, system_database_wait_sec=1.5))
    started = time.monotonic()
    with pytest.raises(DBOSInitializationError) as caught:
        DBOS.launch()
    waited = time.monotonic() - started
    assert 1.5 <= waited < 12  # it waited for a server that might be starting, then gave up
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "Check that PostgreSQL is running" in message
    assert any("Waiting up to 2s for the system database" in r.getMessage() for r in caplog.records)


def test_a_refused_login_fails_launch_at_once(unconfigured: None, postgres_server_url: str) -> None:
    """A wrong user is a mistake to fix, not a server to wait for."""
    url = re.sub(r"//[^@/]*@", "//no_such_role@", postgres_server_url)
    if "no_such_role@" not in url:
        url = postgres_server_url.replace("://", "://no_such_role@", 1)
    DBOS(config=make_config(url, system_database_wait_sec=60))
    started = time.monotonic()
    with pytest.raises(DBOSInitializationError, match="no_such_role"):
        DBOS.launch()
    assert time.monotonic() - started < 10


def test_sqlite_in_a_missing_folder_fails_launch(unconfigured: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'app.sqlite'}"
    DBOS(config=make_config(url))
    with pytest.raises(DBOSInitializationError, match="does not exist"):
        DBOS.launch()


def test_in_memory_sqlite_is_refused(unconfigured: None) -> None:
    DBOS(config=make_config("sqlite:///:memory:"))
    with pytest.raises(DBOSInitializationError, match="in-memory"):
        DBOS.launch()


def test_unserializable_argument_records_nothing(dbos: type[DBOS]) -> None:
    runs: list[object] = []

    @DBOS.workflow()
    def flow(value: object) -> None:
        runs.append(value)

    with SetWorkflowID("bad-arg"), pytest.raises(DBOSSerializationError) as caught:
        flow(object())
    message = str(caught.value)
    assert "bad-arg" in message
    assert "'object'" in message
    assert "pickle" in message
    assert runs == []
    assert DBOS.get_workflow_status("bad-arg") is None

    with SetWorkflowID("bad-arg-started"), pytest.raises(DBOSSerializationError, match="bad-arg"):
        DBOS.start_workflow(flow, {1, object()})
    assert DBOS.get_workflow_status("bad-arg-started") is None


def test_reset_system_database_after_launch_is_refused(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    with SetWorkflowID("kept"):
        flow()
    with pytest.raises(DBOSInitializationError, match=r"before DBOS\.launch\(\)"):
        DBOS.reset_system_database()
    status = DBOS.get_workflow_status("kept")
    assert status is not None
    assert status.status == "SUCCESS"


def test_reset_system_database_before_launch_deletes_records(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    with SetWorkflowID("forgotten"):
        flow()
    DBOS.destroy()
    DBOS(config=make_config(db_url))
    DBOS.reset_system_database()
    DBOS.launch()
    assert DBOS.get_workflow_status("forgotten") is None
    with SetWorkflowID("forgotten"):
        assert flow() == 1


def test_reset_and_migrate_in_dbos_forms(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.workflow()
    def flow() -> int:
        return 1

    with SetWorkflowID("reset-me"):
        flow()
    DBOS.destroy()
    DBOS.reset_system_database()  # no instance, no URL: nothing happens but a warning
    assert "reset_system_database did nothing" in caplog.text
    DBOS.reset_system_database(system_database_url=db_url, schema="dbos", truncate=True)
    DBOS.migrate(db_url)  # the schema again, as its owner would
    run_dbos_database_migrations(db_url)  # idempotent
    DBOS(config=make_config(db_url))
    DBOS.launch()
    assert DBOS.get_workflow_status("reset-me") is None
    with pytest.raises(DBOSInitializationError, match="schema 'perdure'"):
        DBOS.migrate(db_url, schema="other")
    with pytest.raises(DBOSInitializationError, match="DBOS Cloud"):
        DBOS.migrate(db_url, sharding=True)
    if db_url.startswith("sqlite"):
        with pytest.raises(DBOSInitializationError, match="SQLite has no roles"):
            DBOS.migrate(db_url, application_role="app")


def test_transactions_use_a_separate_application_database(
    unconfigured: None, db_url: str, tmp_path: Path
) -> None:
    app_path = tmp_path / "app.sqlite"
    app_url = f"sqlite:///{app_path}"
    DBOS(config=make_config(db_url, application_database_url=app_url))
    DBOS.launch()
    runs: list[str] = []

    @DBOS.transaction()
    def create() -> None:
        DBOS.sql_session.execute(text("CREATE TABLE notes (body TEXT)"))

    @DBOS.transaction()
    def insert(body: str) -> int:
        runs.append(body)
        DBOS.sql_session.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": body})
        return len(runs)

    @DBOS.workflow()
    def flow(body: str) -> int:
        return insert(body)

    create()
    for _ in range(2):
        with SetWorkflowID("app-db"):
            assert flow("in the app db") == 1
    mark_pending(db_url, "app-db")
    relaunch(db_url, application_database_url=app_url)
    assert DBOS.retrieve_workflow("app-db").get_result() == 1

    assert runs == ["in the app db"]
    with closing(sqlite3.connect(app_path)) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("in the app db",)]


def test_max_executor_threads_bounds_background_workflows(unconfigured: None, db_url: str) -> None:
    DBOS(config=make_config(db_url, max_executor_threads=2))
    DBOS.launch()
    lock = threading.Lock()
    running: list[int] = []
    peak: list[int] = [0]
    release = threading.Event()

    @DBOS.workflow()
    def busy(i: int) -> int:
        with lock:
            running.append(i)
            peak[0] = max(peak[0], len(running))
        release.wait(10)
        with lock:
            running.remove(i)
        return i

    handles = [DBOS.start_workflow(busy, i) for i in range(6)]
    wait_until(lambda: len(running) == 2, timeout=5, what="two workflows running")
    release.set()
    assert [h.get_result() for h in handles] == list(range(6))
    assert peak[0] == 2


def test_raised_errors_carry_dbos_codes_and_attributes(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError) as missing:
        DBOS.retrieve_workflow("no-such-workflow")
    assert (missing.value.destination, missing.value.destination_id) == (
        "target",
        "no-such-workflow",
    )
    assert missing.value.workflow_id == "no-such-workflow"
    assert missing.value.dbos_error_code == DBOSErrorCode.NonExistentWorkflowError.value
    assert str(missing.value).startswith("DBOS Error 5: ")

    signals: list[BaseException] = []

    @DBOS.workflow()
    def sleepy() -> None:
        try:
            DBOS.sleep(5)
        except DBOSBaseException as signal:  # what `except Exception` would not catch
            signals.append(signal)
            raise

    with (
        SetWorkflowID("cancelled-in-sleep"),
        SetWorkflowTimeout(0.2),
        pytest.raises(DBOSAwaitedWorkflowCancelledError) as awaited,
    ):
        sleepy()
    assert awaited.value.workflow_id == "cancelled-in-sleep"
    assert awaited.value.dbos_error_code == DBOSErrorCode.AwaitedWorkflowCancelled.value
    [signal] = signals
    assert isinstance(signal, DBOSWorkflowCancelledError)
    assert not isinstance(signal, Exception)
    assert signal.workflow_id == "cancelled-in-sleep"
    assert signal.dbos_error_code == DBOSErrorCode.WorkflowCancelled.value
    assert "'cancelled-in-sleep'" in str(signal)  # names the workflow
