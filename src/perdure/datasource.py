"""``SQLAlchemyDatasource`` and ``AsyncSQLAlchemyDatasource``: DBOS 3.x's way to run
transactions on a database of your own, each exactly once inside a workflow (its checkpoint
committed in the same transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast, overload

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from perdure.dbos import DBOS
from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution import transaction
from perdure.execution.app_database import ApplicationDatabase, DatabaseOptions
from perdure.execution.checkpoint_table import (
    is_sqlite_url,
    migrate_checkpoint_table,
    schema_or_default,
)
from perdure.execution.context import sql_session
from perdure.execution.workflow import WorkflowEngine
from perdure.serialization import Serializer
from perdure.serialization.interfaces import as_serializer

F = TypeVar("F", bound=Callable[..., Any])


def _database(
    kind: str,
    database_url: str,
    *,
    asynchronous: bool,
    options: DatabaseOptions,
) -> ApplicationDatabase:
    """The database of a new datasource (not yet registered for disposal)."""
    runtime = DBOS._runtime
    if runtime is None:
        raise DBOSInitializationError(
            f"Create the {kind} after DBOS(config=...): it needs the system database to "
            "record its transactions' outcomes."
        )
    return ApplicationDatabase(
        database_url,
        system_url=runtime.settings.system_database_url,
        asynchronous=asynchronous,
        options=options,
    )


def _check_engine(
    kind: str, database_url: str, engine: object, engine_kwargs: object, expected: type
) -> None:
    """Refuse an engine of the wrong kind or backend, or one given with engine_kwargs."""
    if engine is None:
        if engine_kwargs is not None and not isinstance(engine_kwargs, Mapping):
            raise DBOSInitializationError(
                f"{kind}.create: engine_kwargs={engine_kwargs!r} is not a dict of "
                "create_engine keyword arguments."
            )
        return
    if not isinstance(engine, expected):
        raise DBOSInitializationError(
            f"{kind}.create: engine={engine!r} is not a {expected.__module__}."
            f"{expected.__qualname__}; pass the engine its transactions run on."
        )
    if engine_kwargs:
        raise DBOSInitializationError(
            f"{kind}.create: engine_kwargs configure an engine Perdure creates; with "
            "engine= given they would be ignored. Configure the engine you pass instead."
        )
    dialect = cast("sa.Engine | AsyncEngine", engine).dialect.name
    if (dialect == "sqlite") != is_sqlite_url(database_url):
        raise DBOSInitializationError(
            f"{kind}.create: the engine is a {dialect} engine but database_url names another "
            "kind of database; pass the URL of the engine's database."
        )


def _check_sessions(kind: str, sessions: object, expected: type) -> None:
    """Refuse a session factory of the wrong kind, or one binding some tables elsewhere."""
    if sessions is None:
        return
    if not isinstance(sessions, expected):
        raise DBOSInitializationError(
            f"{kind}.create: sessionmaker={sessions!r} is not a {expected.__module__}."
            f"{expected.__qualname__}."
        )
    if cast("orm.sessionmaker[Any] | async_sessionmaker[Any]", sessions).kw.get("binds"):
        raise DBOSInitializationError(
            f"{kind}.create: the sessionmaker sets binds=, which would send some statements "
            "to another engine than the datasource's, out of the transaction its checkpoint "
            "commits in. Leave binds out: every session is bound to the datasource's engine."
        )


def _serializer(kind: str, serializer: object) -> Serializer | None:
    if serializer is None:
        return None
    adapted = as_serializer(serializer)
    if adapted is None:
        raise DBOSInitializationError(
            f"{kind}.create: serializer={serializer!r} is not a serializer. Pass a DBOS "
            "Serializer (serialize, deserialize, name()) or an object with name, "
            "dumps(value) and loads(data)."
        )
    return adapted


class _Datasource:
    """What both datasources share: the database, its current session, the decorator."""

    _KIND = ""
    _IS_ASYNC = False

    def __init__(self, database: ApplicationDatabase) -> None:
        self._database = database

    def _current_session(self) -> Session | AsyncSession:
        session = sql_session()
        if session is None or not self._database.owns(session):
            raise DBOSException(
                "sql_session() is only available inside a function decorated with this "
                f"{self._KIND}'s @transaction."
            )
        return cast("Session | AsyncSession", session)

    @overload
    def transaction(self, func: F) -> F: ...

    @overload
    def transaction(
        self, func: None = None, *, name: str | None = None, isolation_level: str = ...
    ) -> Callable[[F], F]: ...

    def transaction(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        isolation_level: str = "SERIALIZABLE",
    ) -> F | Callable[[F], F]:
        """Run the function in a transaction on this datasource; exactly once in a workflow.

        Usable bare (``@db.transaction``) or called (``@db.transaction(isolation_level=...)``).
        """
        level = transaction.isolation(isolation_level)
        is_async = self._IS_ASYNC

        def target() -> tuple[WorkflowEngine, ApplicationDatabase]:
            return DBOS._require_runtime().engine, self._database

        def decorate(f: F) -> F:
            run = transaction.transactional(
                f,
                name=name,
                level=level,
                target=target,
                decorator="@datasource.transaction",
                is_async=is_async,
            )
            return cast(F, run)

        return decorate(func) if func is not None else decorate


class SQLAlchemyDatasource(_Datasource):
    """A database transactions run on: ``db = SQLAlchemyDatasource.create(url)``, then
    ``@db.transaction`` on a function that uses ``db.sql_session()``.

    Inside a workflow a transaction commits once: its checkpoint is written in the same
    transaction (in a table ``transaction_outputs`` of schema ``perdure``, or of the schema
    given to `create`, of that database; ``perdure_transaction_outputs`` on SQLite; or in
    Perdure's own tables when it is the system database), so a recovery finds it committed
    and never runs it again. Outside a workflow it is a plain transaction.

    Create it after ``DBOS(config=...)``: it uses that instance's system database.
    """

    _KIND = "SQLAlchemyDatasource"

    @staticmethod
    def create(  # noqa: PLR0917 - DBOS's parameter list, each passable by position as there
        database_url: str,
        engine_kwargs: dict[str, Any] | None = None,
        engine: sa.Engine | None = None,
        schema: str | None = None,
        serializer: object | None = None,
        sessionmaker: orm.sessionmaker[Any] | None = None,
        run_migrations: bool = True,
    ) -> SQLAlchemyDatasource:
        """A datasource on ``database_url`` (``sqlite:///...`` or ``postgresql://...``).

        Args:
            database_url: The database the transactions run on.
            engine_kwargs: Keyword arguments of ``sqlalchemy.create_engine`` for the engine
                Perdure creates (on SQLite without libpq-only ``connect_args``).
            engine: Your engine, used instead of creating one: configured as you made it
                (Perdure adds no event listener to it) and never disposed by Perdure.
                ``database_url`` must name the same kind of database.
            schema: The PostgreSQL schema of the checkpoint table (default ``perdure``).
                SQLite has no schemas: ignored there, as in DBOS. Not used when the
                datasource is the system database (its checkpoints go to Perdure's tables).
            serializer: Encodes the outputs and errors of this datasource's transactions
                (a DBOS ``Serializer`` or a Perdure one); default: the configured
                serializer. Recorded under its name, read back by it on replay.
            sessionmaker: Makes each transaction's ``Session`` (bound by Perdure to the
                transaction's connection; it must not set ``binds``). Default:
                ``sessionmaker(expire_on_commit=False)``, as in DBOS.
            run_migrations: Create the checkpoint table if missing; if False, only check
                that it exists (see `migrate`).

        Raises:
            DBOSInitializationError: Called before ``DBOS(config=...)``; an option of the
                wrong kind, or ``engine`` with ``engine_kwargs``; the checkpoint table is
                missing and cannot (or, with ``run_migrations=False``, may not) be created.
        """
        kind = SQLAlchemyDatasource._KIND
        _check_engine(kind, database_url, engine, engine_kwargs, sa.Engine)
        _check_sessions(kind, sessionmaker, orm.sessionmaker)
        options = DatabaseOptions(
            engine=engine,
            engine_kwargs=engine_kwargs or {},
            schema=schema_or_default(schema),
            serializer=_serializer(kind, serializer),
            sessions=sessionmaker or orm.sessionmaker(expire_on_commit=False),
        )
        database = _database(kind, database_url, asynchronous=False, options=options)
        try:
            if run_migrations:
                database.ensure_schema()
            else:
                database.check_schema()
        except BaseException:
            database.dispose()
            raise
        DBOS._datasources.append(database)
        return SQLAlchemyDatasource(database)

    @staticmethod
    def migrate(
        database_url: str, *, schema: str | None = None, application_role: str | None = None
    ) -> None:
        """Create the checkpoint table of a datasource's database, as a role allowed to (its
        schema's owner), without creating a datasource (no ``DBOS(config=...)`` needed).

        Args:
            database_url: The datasource's database, reached as the privileged role.
            schema: The PostgreSQL schema of the checkpoint table (default ``perdure``);
                the schema is created if missing. Ignored on SQLite.
            application_role: A PostgreSQL role to grant what running transactions needs on
                the table (use of the schema; SELECT, INSERT, DELETE on the table) and no
                right to alter it. The application then creates its datasource as that role,
                with ``run_migrations=False`` (or True: nothing is created once it exists).

        Raises:
            DBOSInitializationError: ``application_role`` on SQLite, or this role may not
                create the table.
            sqlalchemy.exc.DBAPIError: The database is unreachable, or the grant failed.
        """
        migrate_checkpoint_table(database_url, schema=schema, application_role=application_role)

    def sql_session(self) -> Session:
        """The ``Session`` of the transaction running now on this datasource."""
        return cast(Session, self._current_session())


class AsyncSQLAlchemyDatasource(_Datasource):
    """`SQLAlchemyDatasource` for coroutine functions: ``db = await
    AsyncSQLAlchemyDatasource.create(url)``, then ``@db.transaction`` on an ``async def``
    that awaits ``db.sql_session()``'s ``AsyncSession``. Exactly once in a workflow, the same
    way. PostgreSQL runs on psycopg's async driver, SQLite on aiosqlite.
    """

    _KIND = "AsyncSQLAlchemyDatasource"
    _IS_ASYNC = True

    @staticmethod
    async def create(  # noqa: PLR0917 - DBOS's parameter list, each passable by position
        database_url: str,
        engine_kwargs: dict[str, Any] | None = None,
        engine: AsyncEngine | None = None,
        schema: str | None = None,
        serializer: object | None = None,
        sessionmaker: async_sessionmaker[Any] | None = None,
        run_migrations: bool = True,
    ) -> AsyncSQLAlchemyDatasource:
        """An async datasource on ``database_url``; arguments as `SQLAlchemyDatasource.create`,
        except that ``engine`` is an ``AsyncEngine`` (used on every event loop a transaction
        runs on, as in DBOS: Perdure runs recovered workflows on loops of its own) and
        ``sessionmaker`` an ``async_sessionmaker``. Without an engine, Perdure creates one
        per event loop with ``engine_kwargs``.
        """
        kind = AsyncSQLAlchemyDatasource._KIND
        _check_engine(kind, database_url, engine, engine_kwargs, AsyncEngine)
        _check_sessions(kind, sessionmaker, async_sessionmaker)
        options = DatabaseOptions(
            async_engine=engine,
            engine_kwargs=engine_kwargs or {},
            schema=schema_or_default(schema),
            serializer=_serializer(kind, serializer),
            async_sessions=sessionmaker or async_sessionmaker(expire_on_commit=False),
        )
        database = _database(kind, database_url, asynchronous=True, options=options)
        try:
            if run_migrations:
                await database.ensure_schema_async()
            else:
                await database.check_schema_async()
        except BaseException:
            await database.dispose_async()
            raise
        DBOS._datasources.append(database)
        return AsyncSQLAlchemyDatasource(database)

    @staticmethod
    async def migrate(
        database_url: str, *, schema: str | None = None, application_role: str | None = None
    ) -> None:
        """`SQLAlchemyDatasource.migrate`, awaited (run on a worker thread)."""
        await asyncio.to_thread(
            migrate_checkpoint_table,
            database_url,
            schema=schema,
            application_role=application_role,
        )

    def sql_session(self) -> AsyncSession:
        """The ``AsyncSession`` of the transaction running now on this datasource."""
        return cast(AsyncSession, self._current_session())
