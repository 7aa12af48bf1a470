"""``@DBOS.transaction`` on both backends: commits once, rolls back on error, isolation levels."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSInitializationError
from tests.integration.system_tables import mark_pending, relaunch


class NoteRejectedError(Exception):
    """Raised inside a transaction after it wrote (module level: stored errors keep their type)."""


def _greetings_table() -> Callable[[], list[tuple[str, str]]]:
    """Create the app table ``greetings`` (no key: duplicates would show) and return a reader."""

    @DBOS.transaction()
    def create() -> None:
        DBOS.sql_session.execute(text("CREATE TABLE greetings (name TEXT, note TEXT)"))

    @DBOS.transaction()
    def read_all() -> list[tuple[str, str]]:
        rows = DBOS.sql_session.execute(text("SELECT name, note FROM greetings ORDER BY name"))
        return [(r.name, r.note) for r in rows]

    create()
    return read_all


def test_transaction_outside_a_workflow_commits(dbos: type[DBOS]) -> None:
    read_all = _greetings_table()

    @DBOS.transaction()
    def insert(name: str, note: str) -> int:
        result = DBOS.sql_session.execute(
            text("INSERT INTO greetings (name, note) VALUES (:name, :note)"),
            {"name": name, "note": note},
        )
        return int(result.rowcount)

    assert insert("ann", "hi") == 1
    assert insert("bob", "hey") == 1
    assert read_all() == [("ann", "hi"), ("bob", "hey")]


def test_transaction_in_a_workflow_commits_once(dbos: type[DBOS]) -> None:
    read_all = _greetings_table()
    runs: list[str] = []

    @DBOS.transaction()
    def insert(name: str, note: str) -> str:
        runs.append(name)
        DBOS.sql_session.execute(
            text("INSERT INTO greetings (name, note) VALUES (:name, :note)"),
            {"name": name, "note": note},
        )
        return f"{name} signed at position {DBOS.step_id}"

    @DBOS.workflow()
    def greet(name: str, note: str) -> str:
        return insert(name, note)

    for _ in range(3):
        with SetWorkflowID("greet-ann"):
            assert greet("ann", "hi") == "ann signed at position 1"
    assert runs == ["ann"]
    assert read_all() == [("ann", "hi")]
    status = DBOS.get_workflow_status("greet-ann")
    assert status is not None
    assert (status.status, status.output) == ("SUCCESS", "ann signed at position 1")


def test_recovered_workflow_does_not_rerun_its_transaction(dbos: type[DBOS], db_url: str) -> None:
    read_all = _greetings_table()
    runs: list[str] = []
    body_runs: list[str] = []

    @DBOS.transaction()
    def insert(name: str) -> int:
        runs.append(name)
        DBOS.sql_session.execute(
            text("INSERT INTO greetings (name, note) VALUES (:name, 'recovered')"),
            {"name": name},
        )
        return len(runs)

    @DBOS.workflow()
    def greet(name: str) -> int:
        body_runs.append(name)
        return insert(name)

    with SetWorkflowID("greet-cy"):
        assert greet("cy") == 1
    mark_pending(db_url, "greet-cy")
    relaunch(db_url)

    assert DBOS.retrieve_workflow("greet-cy").get_result() == 1
    assert body_runs == ["cy", "cy"]
    assert runs == ["cy"]
    assert read_all() == [("cy", "recovered")]


def test_error_in_a_transaction_rolls_back_and_keeps_its_type(dbos: type[DBOS]) -> None:
    read_all = _greetings_table()

    @DBOS.transaction()
    def insert_then_fail(name: str) -> None:
        DBOS.sql_session.execute(
            text("INSERT INTO greetings (name, note) VALUES (:name, 'never')"), {"name": name}
        )
        raise NoteRejectedError(f"note of {name} rejected")

    @DBOS.workflow()
    def greet(name: str) -> None:
        insert_then_fail(name)

    with SetWorkflowID("greet-bad"), pytest.raises(NoteRejectedError, match="note of dee"):
        greet("dee")
    assert read_all() == []
    status = DBOS.retrieve_workflow("greet-bad").get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, NoteRejectedError)
    with pytest.raises(NoteRejectedError, match="note of dee rejected"):
        DBOS.retrieve_workflow("greet-bad").get_result()

    # Outside a workflow the rollback and the error type are the same.
    with pytest.raises(NoteRejectedError, match="note of eve"):
        insert_then_fail("eve")
    assert read_all() == []


def test_sql_session_outside_a_transaction_is_a_clear_error(dbos: type[DBOS]) -> None:
    with pytest.raises(
        DBOSInitializationError, match=r"only available inside a @DBOS\.transaction"
    ):
        DBOS.sql_session  # noqa: B018 - the property access is what raises

    @DBOS.step()
    def step_using_session() -> None:
        DBOS.sql_session  # noqa: B018

    @DBOS.workflow()
    def flow() -> None:
        step_using_session()

    with pytest.raises(DBOSInitializationError, match=r"@DBOS\.transaction"):
        flow()


def test_read_committed_isolation_is_accepted(dbos: type[DBOS]) -> None:
    read_all = _greetings_table()

    @DBOS.transaction(isolation_level="READ COMMITTED")
    def insert(name: str) -> None:
        DBOS.sql_session.execute(
            text("INSERT INTO greetings (name, note) VALUES (:name, 'rc')"), {"name": name}
        )

    @DBOS.workflow()
    def greet(name: str) -> None:
        insert(name)

    greet("fay")
    insert("gus")
    assert read_all() == [("fay", "rc"), ("gus", "rc")]


def test_invalid_isolation_level_is_refused() -> None:
    with pytest.raises(DBOSInitializationError, match="READ COMMITTED") as caught:
        DBOS.transaction(isolation_level="CHAOS")
    assert "CHAOS" in str(caught.value)


def test_concurrent_serializable_transactions_are_retried(dbos: type[DBOS]) -> None:
    @DBOS.transaction()
    def create() -> None:
        DBOS.sql_session.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        DBOS.sql_session.execute(text("INSERT INTO counter (n) VALUES (0)"))

    attempts: list[int] = []
    gate = threading.Barrier(8)

    @DBOS.transaction()
    def increment() -> int:
        attempts.append(1)
        current = DBOS.sql_session.execute(text("SELECT n FROM counter")).scalar_one()
        DBOS.sql_session.execute(text("UPDATE counter SET n = :n"), {"n": current + 1})
        return int(current)

    @DBOS.transaction()
    def read() -> int:
        return int(DBOS.sql_session.execute(text("SELECT n FROM counter")).scalar_one())

    create()
    seen: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        gate.wait()
        try:
            seen.append(increment())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Every increment saw a distinct value: lost updates were retried, not committed.
    assert sorted(seen) == list(range(8))
    assert read() == 8
    assert len(attempts) >= 8


def test_async_transaction_is_awaitable_or_refused(dbos: type[DBOS]) -> None:
    def decorate() -> Callable[[], Any]:
        @DBOS.transaction()
        async def read_two() -> int:
            return int(DBOS.sql_session.execute(text("SELECT 2")).scalar_one())

        return read_two

    # Either answer is fine: refuse at decoration with a message about async, or be awaitable.
    refusal = ""
    try:
        read_two = decorate()
    except DBOSInitializationError as exc:
        refusal = str(exc)
    if refusal:
        assert "async" in refusal
        return
    assert inspect.iscoroutinefunction(read_two)

    @DBOS.workflow()
    async def flow() -> int:
        return int(await read_two())

    assert asyncio.run(flow()) == 2
