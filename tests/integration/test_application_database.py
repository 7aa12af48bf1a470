"""``@DBOS.transaction`` on an application database separate from the system database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from perdure import DBOS, SetWorkflowID
from perdure.execution.app_database import sqlalchemy_url
from perdure.execution.recovery import take_over
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import run_sql


@pytest.fixture
def app_dbos(db_url: str, other_db_url: str) -> Iterator[sa.Engine]:
    DBOS(config=make_config(db_url, application_database_url=other_db_url))
    DBOS.launch()
    engine = sa.create_engine(sqlalchemy_url(other_db_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (body TEXT)"))
    yield engine
    engine.dispose()
    DBOS.destroy(destroy_registry=True)


def _notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT body FROM notes ORDER BY body"))]


def test_transaction_commits_once_in_the_application_database(app_dbos: sa.Engine) -> None:
    runs: list[str] = []

    @DBOS.transaction()
    def add_note(body: str) -> str:
        runs.append(body)
        DBOS.sql_session.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})
        return body.upper()

    @DBOS.workflow()
    def flow(body: str) -> str:
        return add_note(body)

    for _ in range(2):
        with SetWorkflowID("note-1"):
            assert flow("hello") == "HELLO"
    assert runs == ["hello"]
    assert _notes(app_dbos) == ["hello"]


def test_checkpoint_committed_before_a_crash_is_found_on_recovery(
    app_dbos: sa.Engine, db_url: str
) -> None:
    runs: list[str] = []

    @DBOS.transaction()
    def add_note(body: str) -> str:
        runs.append(body)
        DBOS.sql_session.execute(sa.text("INSERT INTO notes VALUES (:b)"), {"b": body})
        return body.upper()

    @DBOS.workflow()
    def flow(body: str) -> str:
        return add_note(body) + "!"

    with SetWorkflowID("note-2"):
        assert flow("kept") == "KEPT!"
    # As if the process died after the application commit, before the system copy: drop the
    # system checkpoint and hand the workflow to a dead instance.
    runtime = DBOS._runtime
    assert runtime is not None
    store = runtime.engine.store
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'note-2'")
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'PENDING', instance_id = 'dead' "
            "WHERE workflow_id = 'note-2'")  # fmt: skip
    assert take_over(runtime.engine, ("dead",)) == ["note-2"]
    wait_until(lambda: DBOS.retrieve_workflow("note-2").get_status().status == "SUCCESS")
    assert DBOS.retrieve_workflow("note-2").get_result() == "KEPT!"
    assert runs == ["kept"]
    assert _notes(app_dbos) == ["kept"]
    steps = store.load_steps("note-2")
    assert [s.function_name for s in steps] == [add_note.__qualname__]
