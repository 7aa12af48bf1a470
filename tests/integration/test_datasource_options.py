"""DBOS's ``create`` options of both datasources, each seen from its effect: the caller's
engine (used, never disposed), ``engine_kwargs``, ``serializer``, ``sessionmaker``, and
``run_migrations`` passed by position."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from perdure import DBOS, AsyncSQLAlchemyDatasource, SetWorkflowID, SQLAlchemyDatasource
from perdure.error import DBOSInitializationError
from perdure.execution.app_database import sqlalchemy_url
from tests.fixtures.app import make_config
from tests.integration.system_tables import mark_pending, relaunch, run_sql, step_rows


@pytest.fixture
def launched(db_url: str) -> Iterator[None]:
    DBOS(config=make_config(db_url))
    yield
    DBOS.destroy(destroy_registry=True)


def _async_url(url: str) -> str:
    return sqlalchemy_url(url).replace("sqlite://", "sqlite+aiosqlite://", 1)


def _forget_system_copy(db_url: str, workflow_id: str) -> None:
    """Mark a finished workflow PENDING and drop its checkpoints from the system database, as
    if the process died between the datasource's commit and the copy: recovery finds the
    checkpoint in the datasource's own table."""
    mark_pending(db_url, workflow_id)
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = :w", w=workflow_id)


class Tagging:
    """A DBOS-style serializer (text, ``name()`` a method) whose reading shows: it tags what
    it decodes, so a replayed output says which serializer read it."""

    def name(self) -> str:
        return "tagging"

    def serialize(self, data: Any) -> str:
        return json.dumps(data)

    def deserialize(self, serialized_data: str) -> Any:
        return f"decoded {json.loads(serialized_data)}"


class TaggedSession(orm.Session):
    """The caller's session class."""


class TaggedAsyncSession(AsyncSession):
    """The caller's async session class."""


def test_a_callers_engine_runs_the_transactions_and_outlives_destroy(
    launched: None, db_url: str, other_db_url: str
) -> None:
    engine = sa.create_engine(sqlalchemy_url(other_db_url))
    try:
        db = SQLAlchemyDatasource.create(other_db_url, engine=engine)
        runs: list[str] = []

        @db.transaction
        def on_callers_engine(name: str) -> bool:
            runs.append(name)
            return db.sql_session().get_bind().engine is engine

        @DBOS.workflow()
        def flow(name: str) -> bool:
            return on_callers_engine(name)

        DBOS.launch()
        for _ in range(2):
            with SetWorkflowID("engine-1"):
                assert flow("ada") is True
        assert runs == ["ada"]
        _forget_system_copy(db_url, "engine-1")
        relaunch(db_url)
        assert DBOS.retrieve_workflow("engine-1").get_result() is True
        assert runs == ["ada"]  # found committed through the caller's engine, not run again
        pool = engine.pool
        DBOS.destroy(destroy_registry=True)
        assert engine.pool is pool  # not disposed (a dispose replaces the pool)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_engine_kwargs_and_a_sessionmaker_make_the_engine_and_sessions(
    launched: None, other_db_url: str
) -> None:
    db = SQLAlchemyDatasource.create(
        other_db_url,
        engine_kwargs={
            "pool_size": 3,
            "execution_options": {"perdure_test": "marked"},
            # libpq's: PostgreSQL takes it, SQLite's engine drops it (as DBOS does)
            "connect_args": {"application_name": "perdure-datasource"},
        },
    )
    made = SQLAlchemyDatasource.create(
        other_db_url, sessionmaker=orm.sessionmaker(class_=TaggedSession, info={"tag": "mine"})
    )

    @db.transaction
    def engine_settings() -> tuple[int, str, bool]:
        session = db.sql_session()
        conn = session.connection()
        options = conn.get_execution_options()
        return conn.engine.pool.size(), options["perdure_test"], session.expire_on_commit

    @made.transaction
    def session_made() -> tuple[str, str]:
        session = made.sql_session()
        return type(session).__name__, session.info["tag"]

    DBOS.launch()
    # The default sessionmaker keeps returned objects loaded after commit, as DBOS's does.
    assert engine_settings() == (3, "marked", False)
    assert session_made() == ("TaggedSession", "mine")


@pytest.fixture(params=["own database", "system database"])
def datasource_url(request: pytest.FixtureRequest, db_url: str, other_db_url: str) -> str:
    return other_db_url if request.param == "own database" else db_url


def test_a_serializer_records_and_replays_the_transactions_outputs(
    launched: None, db_url: str, datasource_url: str
) -> None:
    db = SQLAlchemyDatasource.create(datasource_url, serializer=Tagging())
    runs: list[str] = []

    @db.transaction
    def greet(name: str) -> str:
        runs.append(name)
        return f"hello {name}"

    @DBOS.workflow()
    def flow(name: str) -> str:
        return greet(name)

    DBOS.launch()
    with SetWorkflowID("tagged-1"):
        assert flow("ada") == "hello ada"  # the function's own value, not a decoded one
    assert [r.serialization for r in step_rows(db_url, "tagged-1")] == ["tagging"]
    mark_pending(db_url, "tagged-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("tagged-1").get_result() == "decoded hello ada"
    assert runs == ["ada"]


def test_a_serializer_reads_the_checkpoint_committed_in_the_datasource(
    launched: None, db_url: str, other_db_url: str
) -> None:
    db = SQLAlchemyDatasource.create(other_db_url, None, None, None, Tagging())

    @db.transaction
    def greet(name: str) -> str:
        return f"hello {name}"

    @DBOS.workflow()
    def flow(name: str) -> str:
        return greet(name)

    DBOS.launch()
    with SetWorkflowID("tagged-2"):
        assert flow("bob") == "hello bob"
    _forget_system_copy(db_url, "tagged-2")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("tagged-2").get_result() == "decoded hello bob"
    assert [r.serialization for r in step_rows(db_url, "tagged-2")] == ["tagging"]


def test_run_migrations_is_the_seventh_positional_argument(
    launched: None, other_db_url: str
) -> None:
    with pytest.raises(DBOSInitializationError, match="run_migrations=False forbids"):
        SQLAlchemyDatasource.create(other_db_url, None, None, None, None, None, False)
    with pytest.raises(DBOSInitializationError, match="run_migrations=False forbids"):
        asyncio.run(
            AsyncSQLAlchemyDatasource.create(other_db_url, None, None, None, None, None, False)
        )
    SQLAlchemyDatasource.create(other_db_url, None, None, None, None, None, True)
    db = SQLAlchemyDatasource.create(other_db_url, None, None, None, None, None, False)
    adb = asyncio.run(
        AsyncSQLAlchemyDatasource.create(other_db_url, None, None, None, None, None, False)
    )

    @db.transaction
    def one() -> int:
        return int(db.sql_session().execute(sa.text("SELECT 1")).scalar_one())

    @adb.transaction
    async def two() -> int:
        return int((await adb.sql_session().execute(sa.text("SELECT 2"))).scalar_one())

    DBOS.launch()
    assert one() == 1
    assert asyncio.run(two()) == 2


def test_options_of_the_wrong_kind_are_refused(launched: None, other_db_url: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(other_db_url))
    async_engine = create_async_engine(_async_url(other_db_url))
    create = SQLAlchemyDatasource.create
    try:
        with pytest.raises(DBOSInitializationError, match="would be ignored"):
            create(other_db_url, engine=engine, engine_kwargs={"pool_size": 3})
        with pytest.raises(DBOSInitializationError, match=r"is not a .*\.Engine"):
            create(other_db_url, engine=async_engine)  # type: ignore[arg-type]
        with pytest.raises(DBOSInitializationError, match="another kind of database"):
            create("postgresql://nobody@localhost/nowhere", engine=sa.create_engine("sqlite://"))
        with pytest.raises(DBOSInitializationError, match=r"is not a .*sessionmaker"):
            create(other_db_url, sessionmaker=async_sessionmaker())  # type: ignore[arg-type]
        with pytest.raises(DBOSInitializationError, match="binds="):
            create(other_db_url, sessionmaker=orm.sessionmaker(binds={TaggedSession: engine}))
        with pytest.raises(DBOSInitializationError, match="is not a serializer"):
            create(other_db_url, serializer=object())
        with pytest.raises(DBOSInitializationError, match="schema=''"):
            create(other_db_url, schema="")
        with pytest.raises(DBOSInitializationError, match=r"is not a .*async_sessionmaker"):
            asyncio.run(
                AsyncSQLAlchemyDatasource.create(other_db_url, sessionmaker=orm.sessionmaker())  # type: ignore[arg-type]
            )
    finally:
        engine.dispose()
        asyncio.run(async_engine.dispose())


def test_an_async_datasource_on_a_callers_engine_and_sessionmaker(
    launched: None, db_url: str, other_db_url: str
) -> None:
    engine = create_async_engine(_async_url(other_db_url))
    sessions = async_sessionmaker(class_=TaggedAsyncSession)
    db = asyncio.run(
        AsyncSQLAlchemyDatasource.create(other_db_url, sessionmaker=sessions, engine=engine)
    )
    runs: list[str] = []

    @db.transaction
    async def where(name: str) -> tuple[bool, str]:
        runs.append(name)
        session = db.sql_session()
        conn = await session.connection()
        return conn.engine is engine, type(session).__name__

    @DBOS.workflow()
    async def flow(name: str) -> list[Any]:
        return list(await where(name))

    DBOS.launch()
    with SetWorkflowID("aengine-1"):
        assert asyncio.run(flow("ada")) == [True, "TaggedAsyncSession"]
    # Recovery runs on Perdure's own event loop, and finds the checkpoint through the
    # caller's engine there too.
    _forget_system_copy(db_url, "aengine-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("aengine-1").get_result() == [True, "TaggedAsyncSession"]
    assert runs == ["ada"]
    pool = engine.sync_engine.pool
    DBOS.destroy(destroy_registry=True)
    assert engine.sync_engine.pool is pool  # not disposed

    async def still_usable() -> int:
        async with engine.connect() as conn:
            value = (await conn.execute(sa.text("SELECT 1"))).scalar_one()
        await engine.dispose()
        return int(value)

    assert asyncio.run(still_usable()) == 1


def test_an_async_datasource_with_engine_kwargs_and_a_serializer(
    launched: None, db_url: str, other_db_url: str
) -> None:
    db = asyncio.run(
        AsyncSQLAlchemyDatasource.create(
            other_db_url,
            {"pool_size": 3, "execution_options": {"perdure_test": "marked"}},
            serializer=Tagging(),
        )
    )

    @db.transaction
    async def settings() -> list[Any]:
        conn = await db.sql_session().connection()
        return [
            conn.engine.pool.size(),
            conn.sync_connection.get_execution_options()["perdure_test"],
        ]

    @DBOS.workflow()
    async def flow() -> list[Any]:
        return await settings()

    DBOS.launch()
    with SetWorkflowID("akwargs-1"):
        assert asyncio.run(flow()) == [3, "marked"]
    _forget_system_copy(db_url, "akwargs-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("akwargs-1").get_result() == "decoded [3, 'marked']"
