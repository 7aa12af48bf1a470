"""`AsyncSQLAlchemyDatasource`: async transactions on an `AsyncSession`, exactly once per
workflow, on the system database and on a database of its own (psycopg async, aiosqlite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from perdure import DBOS, AsyncSQLAlchemyDatasource, SetWorkflowID
from perdure.error import DBOSException, DBOSInitializationError
from tests.fixtures.app import make_config
from tests.integration.system_tables import mark_pending, relaunch, run_sql, step_rows
from tests.integration.test_datasource import GREETINGS


@pytest.fixture(params=["own database", "system database"])
def datasource_url(request: pytest.FixtureRequest, db_url: str, other_db_url: str) -> str:
    return other_db_url if request.param == "own database" else db_url


@pytest.fixture
def launched(db_url: str) -> Iterator[None]:
    DBOS(config=make_config(db_url))
    yield
    DBOS.destroy(destroy_registry=True)


def _create_table(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        GREETINGS.create(conn, checkfirst=True)
    engine.dispose()


def test_an_async_transaction_commits_once_per_workflow(
    launched: None, db_url: str, datasource_url: str
) -> None:
    db = asyncio.run(AsyncSQLAlchemyDatasource.create(datasource_url))
    _create_table(datasource_url)
    runs: list[str] = []

    @db.transaction
    async def insert_greeting(name: str) -> str:
        runs.append(name)
        session = db.sql_session()
        found = await session.execute(
            sa.select(GREETINGS.c.greet_count).where(GREETINGS.c.name == name)
        )
        count = (found.scalar_one_or_none() or 0) + 1
        await session.execute(sa.delete(GREETINGS).where(GREETINGS.c.name == name))
        await session.execute(sa.insert(GREETINGS).values(name=name, greet_count=count))
        return f"Greetings, {name}! You have been greeted {count} times."

    @db.transaction(isolation_level="READ COMMITTED")
    async def read_count(name: str) -> int:
        found = await db.sql_session().execute(
            sa.select(GREETINGS.c.greet_count).where(GREETINGS.c.name == name)
        )
        return int(found.scalar_one())

    @db.transaction
    async def refuse(name: str) -> None:
        await db.sql_session().execute(sa.insert(GREETINGS).values(name=name, greet_count=99))
        raise ValueError(f"no greeting for {name}")

    @DBOS.workflow()
    async def greeting_endpoint(name: str) -> str:
        return await insert_greeting(name)

    @DBOS.workflow()
    async def refused_endpoint(name: str) -> str:
        try:
            await refuse(name)
        except ValueError as exc:
            return str(exc)
        return "not refused"

    DBOS.launch()

    async def greet_twice() -> tuple[str, str]:
        with SetWorkflowID("agreet-1"):
            first = await greeting_endpoint("ada")
        with SetWorkflowID("agreet-2"):
            second = await greeting_endpoint("ada")
        return first, second

    assert asyncio.run(greet_twice()) == (
        "Greetings, ada! You have been greeted 1 times.",
        "Greetings, ada! You have been greeted 2 times.",
    )
    with SetWorkflowID("arefuse-1"):
        assert asyncio.run(refused_endpoint("bob")) == "no greeting for bob"
    # Recovery replays agreet-1 (on Perdure's own event loop): its transaction does not run
    # again, its result comes back; the refused one replays its recorded error.
    mark_pending(db_url, "agreet-1")
    mark_pending(db_url, "arefuse-1")
    if datasource_url != db_url:
        # As if the process died between the commit and copying the checkpoint to the system
        # database: recovery finds the checkpoint committed in the datasource.
        run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'agreet-1'")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("agreet-1").get_result() == (
        "Greetings, ada! You have been greeted 1 times."
    )
    assert DBOS.retrieve_workflow("arefuse-1").get_result() == "no greeting for bob"
    assert runs == ["ada", "ada"]
    assert [r.function_id for r in step_rows(db_url, "agreet-1")] == [1]
    assert asyncio.run(read_count("ada")) == 2  # outside a workflow: a plain transaction
    with pytest.raises(sa.exc.NoResultFound):
        asyncio.run(read_count("bob"))  # the refused transaction's insert was rolled back
    with pytest.raises(DBOSException, match="only available inside"):
        db.sql_session()


def test_async_datasource_needs_async_functions(launched: None, db_url: str) -> None:
    db = asyncio.run(AsyncSQLAlchemyDatasource.create(db_url))
    with pytest.raises(DBOSInitializationError, match="coroutine functions"):

        @db.transaction
        def plain() -> None:
            pass

    with pytest.raises(DBOSInitializationError, match=r"is not a .*AsyncEngine"):
        asyncio.run(AsyncSQLAlchemyDatasource.create(db_url, engine=object()))
