"""Cost per operation, counted as statements sent to the database (SPEC §9), on both backends.

Start is one statement, each step on the success path one, completion one; a resumed workflow
loads its recorded steps with a single query. These are counts, not timings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perdure import DBOS, SetWorkflowID
from perdure.execution.recovery import recover_pending_workflows
from perdure.storage.sql_store import SqlStore
from tests.fixtures.app import wait_until


def _store() -> SqlStore:
    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store
    assert isinstance(store, SqlStore)
    return store


@contextmanager
def counting() -> Iterator[list[str]]:
    statements: list[str] = []
    store = _store()

    def listen(sql_text: str) -> None:
        # The scheduler re-reads its table every polling interval: not the operation's cost.
        if threading.current_thread().name != "perdure-scheduler":
            statements.append(sql_text)

    store.statement_listener = listen
    try:
        yield statements
    finally:
        store.statement_listener = None


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
    assert sum("operation_outputs" in s for s in ten) == 10


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


def test_resumed_workflow_loads_its_steps_in_one_query(dbos: type[DBOS]) -> None:
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
    # the workflow to a dead instance, then recover it.
    store = _store()
    table = store.prefix
    store._autocommit(
        store._q(
            f"DELETE FROM {table}operation_outputs WHERE workflow_id = ? AND function_id >= 3"
        ),
        ("resume-me",),
    )
    store._autocommit(
        store._q(
            f"UPDATE {table}workflow_status SET status = 'PENDING', instance_id = 'dead' "
            "WHERE workflow_id = ?"
        ),
        ("resume-me",),
    )
    ran.clear()
    engine = DBOS._runtime.engine  # type: ignore[union-attr]
    with counting() as statements:
        assert recover_pending_workflows(engine) == ["resume-me"]
        wait_until(lambda: DBOS.retrieve_workflow("resume-me").get_status().status == "SUCCESS")
    assert ran == [3, 4]
    loads = [s for s in statements if s.startswith("SELECT") and "operation_outputs" in s]
    assert len(loads) == 1, loads
    step_writes = [s for s in statements if s.startswith("INSERT") and "operation_outputs" in s]
    assert len(step_writes) == 2, statements


def test_a_message_handed_to_a_blocked_receiver_costs_the_receiver_no_statement(
    dbos: type[DBOS],
) -> None:
    @DBOS.workflow()
    def receiver() -> object:
        return DBOS.recv("t", timeout_seconds=30)

    store = _store()
    blocked = "SELECT 1 FROM {p}recv_waiters WHERE workflow_id = ?"
    by_thread: list[tuple[str, str]] = []
    for attempt in range(2):  # the first warms up prepared statements and connections
        workflow_id = f"receiver-{attempt}"
        with SetWorkflowID(workflow_id):
            handle = DBOS.start_workflow(receiver)
        wait_until(lambda: store._autocommit(store._q(blocked), (workflow_id,))[0])  # noqa: B023
        by_thread.clear()
        store.statement_listener = lambda sql: by_thread.append(
            (threading.current_thread().name, sql)
        )
        try:
            DBOS.send(workflow_id, "hi", "t")
            assert handle.get_result() == "hi"
        finally:
            store.statement_listener = None
    sender = threading.current_thread().name
    messaging = ("notifications", "recv_waiters", "operation_outputs")
    receiving = [s for t, s in by_thread if t != sender and any(m in s for m in messaging)]
    assert receiving == []  # the receiver returned with what the sender recorded for it
    if store.backend_name == "postgres":
        assert len([s for t, s in by_thread if t == sender]) == 1  # the send is one statement
