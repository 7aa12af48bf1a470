"""Cost per operation, counted as statements sent to the database (SPEC §9), on both backends.

Start is one statement, each step on the success path one, completion one; a resumed workflow
loads its recorded steps with a single query; a message handed to a blocked receiver costs the
receiver nothing. These are counts, not timings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.execution.recovery import take_over
from perdure.storage.sql_store import SqlStore
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import run_sql

# Background duties poll the store on their own schedule: not the cost of the operation.
BACKGROUND_THREADS = ("perdure-scheduler", "perdure-dequeue", "perdure-takeover")


def _store() -> SqlStore:
    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store
    assert isinstance(store, SqlStore)
    return store


@contextmanager
def counting() -> Iterator[list[tuple[str, str]]]:
    """The (thread name, SQL text) of every statement sent meanwhile, background duties' aside."""
    statements: list[tuple[str, str]] = []
    database = _store().database

    def listen(sql_text: str) -> None:
        name = threading.current_thread().name
        if not name.startswith(BACKGROUND_THREADS):
            statements.append((name, sql_text))

    database.statement_listener = listen
    try:
        yield statements
    finally:
        database.statement_listener = None


def _texts(statements: list[tuple[str, str]]) -> list[str]:
    return [sql for _, sql in statements]


def test_start_step_and_completion_cost_one_statement_each(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def steps(n: int) -> int:
        return sum(noop(i) for i in range(n))

    steps(1)  # warm up: prepared statements, pool connections
    with counting() as empty:
        steps(0)
    with counting() as ten:
        steps(10)
    assert len(empty) == 2, empty  # start + completion
    assert (len(ten) - len(empty)) / 10 == 1, ten  # one INSERT per step, no read before it
    writes = [s for s in _texts(ten) if s.startswith("INSERT") and "operation_outputs" in s]
    assert len(writes) == 10, ten


def test_transaction_checkpoint_adds_no_system_statement(dbos: type[DBOS]) -> None:
    @DBOS.transaction()
    def tx() -> int:
        return 1

    @DBOS.workflow()
    def flow() -> int:
        return tx()

    flow()
    with counting() as statements:
        flow()
    # The checkpoint is written by the user's own transaction, not by the system store.
    assert len(statements) == 2, statements


def test_resumed_workflow_loads_its_steps_in_one_query(dbos: type[DBOS], db_url: str) -> None:
    ran: list[int] = []

    @DBOS.step()
    def step(i: int) -> int:
        ran.append(i)
        return i

    @DBOS.workflow()
    def flow() -> int:
        return sum(step(i) for i in range(5))

    with SetWorkflowID("resume-me"):
        flow()
    # Make it look like a process died after step 3: drop the last two checkpoints and hand
    # the workflow to a dead instance, then take it over.
    run_sql(
        db_url,
        "DELETE FROM {p}operation_outputs WHERE workflow_id = :w AND function_id >= 4",
        w="resume-me",
    )
    run_sql(
        db_url,
        "UPDATE {p}workflow_status SET status = 'PENDING', instance_id = 'dead', output = NULL "
        "WHERE workflow_id = :w",
        w="resume-me",
    )
    ran.clear()
    runtime = DBOS._runtime
    assert runtime is not None
    with counting() as statements:
        assert take_over(runtime.engine, ("dead",)) == ["resume-me"]
        wait_until(lambda: DBOS.retrieve_workflow("resume-me").get_status().status == "SUCCESS")
    assert ran == [3, 4]
    texts = _texts(statements)
    loads = [s for s in texts if s.startswith("SELECT") and "operation_outputs" in s]
    assert len(loads) == 1, texts
    step_writes = [s for s in texts if s.startswith("INSERT") and "operation_outputs" in s]
    assert len(step_writes) == 2, texts


# A waiting receiver also polls, at 10 ms, 20 ms, 40 ms ... apart: once it has checked this
# often, its next check is at least 640 ms away, and a send meanwhile meets no check of its own.
QUIET_AFTER_CHECKS = 7


def _hand_off() -> tuple[str, list[tuple[str, str]]]:
    """Send to a receiver blocked in ``recv``; the sending thread and the statements sent from
    the send on, by thread (after a first round that warms up statements and connections)."""

    @DBOS.workflow()
    def receiver() -> object:
        return DBOS.recv("t", timeout_seconds=60)

    sender = threading.current_thread().name
    for attempt in range(2):
        with counting() as statements:
            with SetWorkflowID(f"receiver-{attempt}"):
                handle = DBOS.start_workflow(receiver)

            def checks() -> int:
                return sum(t != sender and "recv_waiters" in s for t, s in list(statements))

            wait_until(lambda: checks() >= QUIET_AFTER_CHECKS, what="the receiver to wait")
            sent_from = len(statements)
            DBOS.send(f"receiver-{attempt}", "hi", "t")
            assert handle.get_result() == "hi"
    return sender, statements[sent_from:]


def test_a_message_handed_to_a_blocked_receiver_costs_the_receiver_no_statement(
    dbos: type[DBOS],
) -> None:
    sender, statements = _hand_off()
    messaging = ("notifications", "recv_waiters", "operation_outputs")
    receiving = [s for t, s in statements if t != sender and any(m in s for m in messaging)]
    assert receiving == []  # the receiver returned with what the sender recorded for it
    assert any(t == sender and "notifications" in s for t, s in statements)


@pytest.fixture
def postgres_dbos(postgres_url: str) -> Iterator[str]:
    DBOS(config=make_config(postgres_url))
    DBOS.launch()
    yield postgres_url
    DBOS.destroy(destroy_registry=True)


@pytest.mark.single_backend(
    "postgres", reason="a send is one statement only where a chain is one statement (CTEs)"
)
def test_a_send_to_a_blocked_receiver_is_one_statement(postgres_dbos: str) -> None:
    sender, statements = _hand_off()
    assert len([s for t, s in statements if t == sender]) == 1, statements
