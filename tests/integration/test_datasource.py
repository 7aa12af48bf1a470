"""`SQLAlchemyDatasource` (DBOS 3.x's transactions): the starter application's greeting,
counted exactly once per workflow, on the system database and on a database of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from perdure import DBOS, SetWorkflowID, SQLAlchemyDatasource
from perdure.error import DBOSException, DBOSInitializationError
from tests.fixtures.app import make_config
from tests.integration.system_tables import mark_pending, relaunch, run_sql

GREETINGS = sa.Table(
    "dbos_hello",
    sa.MetaData(),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("greet_count", sa.Integer, nullable=False),
)


@pytest.fixture(params=["own database", "system database"])
def datasource_url(request: pytest.FixtureRequest, db_url: str, other_db_url: str) -> str:
    return other_db_url if request.param == "own database" else db_url


@pytest.fixture
def launched(db_url: str) -> Iterator[None]:
    DBOS(config=make_config(db_url))
    yield
    DBOS.destroy(destroy_registry=True)


def test_a_datasource_transaction_commits_once_per_workflow(
    launched: None, db_url: str, datasource_url: str
) -> None:
    db = SQLAlchemyDatasource.create(datasource_url)
    schema_engine = sa.create_engine(
        datasource_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    with schema_engine.begin() as conn:
        GREETINGS.create(conn, checkfirst=True)
    schema_engine.dispose()
    runs: list[str] = []

    @db.transaction
    def insert_greeting(name: str) -> str:
        runs.append(name)
        session = db.sql_session()
        count = session.execute(
            sa.select(GREETINGS.c.greet_count).where(GREETINGS.c.name == name)
        ).scalar_one_or_none()
        count = (count or 0) + 1
        session.execute(sa.delete(GREETINGS).where(GREETINGS.c.name == name))
        session.execute(sa.insert(GREETINGS).values(name=name, greet_count=count))
        return f"Greetings, {name}! You have been greeted {count} times."

    @db.transaction(isolation_level="READ COMMITTED")
    def read_count(name: str) -> int:
        found = db.sql_session().execute(
            sa.select(GREETINGS.c.greet_count).where(GREETINGS.c.name == name)
        )
        return int(found.scalar_one())

    @DBOS.workflow()
    def greeting_endpoint(name: str) -> str:
        return insert_greeting(name)

    DBOS.launch()
    with SetWorkflowID("greet-1"):
        assert greeting_endpoint("ada") == "Greetings, ada! You have been greeted 1 times."
    with SetWorkflowID("greet-2"):
        assert greeting_endpoint("ada") == "Greetings, ada! You have been greeted 2 times."
    # Recovery replays greet-1: its transaction is not run again, its result comes back.
    mark_pending(db_url, "greet-1")
    if datasource_url != db_url:
        # As if the process died between the commit and copying the checkpoint to the system
        # database: recovery finds the checkpoint committed in the datasource.
        run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'greet-1'")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("greet-1").get_result() == (
        "Greetings, ada! You have been greeted 1 times."
    )
    assert runs == ["ada", "ada"]
    assert read_count("ada") == 2  # outside a workflow: a plain transaction
    with pytest.raises(DBOSException, match="only available inside"):
        db.sql_session()


def test_a_datasource_is_created_after_dbos_is_configured(launched: None, db_url: str) -> None:
    DBOS.destroy(destroy_registry=True)
    with pytest.raises(DBOSInitializationError, match="after DBOS"):
        SQLAlchemyDatasource.create(db_url)
