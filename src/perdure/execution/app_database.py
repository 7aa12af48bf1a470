"""The database of ``@DBOS.transaction`` functions and datasources, reached through SQLAlchemy.

A transaction's checkpoint commits inside the user's own transaction. When the application
database is the system database (the default), it goes straight into ``operation_outputs``;
otherwise into a checkpoint table in the application database (`CheckpointTable`), copied into
the system database after commit and looked up there if a crash came in between.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from perdure.execution.checkpoint_table import DEFAULT_SCHEMA, CheckpointTable
from perdure.serialization import Serializer
from perdure.storage import is_connection_failure
from perdure.storage.records import STEP_COLUMNS, StepRow

# PostgreSQL SQLSTATEs a transaction retries at once: serialization_failure, deadlock_detected.
_CONFLICT_SQLSTATES = ("40001", "40P01")
_APP_COLUMNS = ("workflow_id", "function_id", "function_name", "output", "error", "serialization")
# libpq connection parameters SQLite's driver refuses: dropped from a SQLite engine's
# connect_args, as DBOS does, so one engine_kwargs serves both backends.
_PG_ONLY_CONNECT_ARGS = frozenset(("application_name", "connect_timeout"))


def sqlalchemy_url(url: str) -> str:
    """A SQLAlchemy URL using the psycopg 3 driver for PostgreSQL (which SQLAlchemy runs
    async on an async engine) and the standard library's for SQLite."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg_async"):
        return "postgresql+psycopg://" + rest
    if scheme == "sqlite+aiosqlite":
        return "sqlite://" + rest
    return url


@dataclass(frozen=True)
class DatabaseOptions:
    """How a datasource reaches its database: DBOS's ``create`` options, checked already.

    Attributes:
        engine: The caller's engine (sync datasource): used as it is, never disposed.
        async_engine: The caller's async engine (async datasource): used on every event loop
            a transaction runs on, never disposed.
        engine_kwargs: Keyword arguments of the engines Perdure creates (without an engine).
        schema: The PostgreSQL schema of the checkpoint table.
        serializer: Encodes the outcomes of this database's transactions (None: the
            configured serializer).
        sessions: Makes the ``Session`` of each sync transaction.
        async_sessions: Makes the ``AsyncSession`` of each async transaction.
    """

    engine: sa.Engine | None = None
    async_engine: AsyncEngine | None = None
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    schema: str = DEFAULT_SCHEMA
    serializer: Serializer | None = None
    sessions: sessionmaker[Any] = field(default_factory=sessionmaker)
    async_sessions: async_sessionmaker[Any] = field(default_factory=async_sessionmaker)


class ApplicationDatabase:
    """SQLAlchemy engines for transactions and the SQL of their in-transaction checkpoint.

    A synchronous database (``@DBOS.transaction``, `SQLAlchemyDatasource`) runs on one engine;
    an asynchronous one (`AsyncSQLAlchemyDatasource`) on the caller's async engine, or else on
    one engine per event loop, and never opens a synchronous connection.
    """

    def __init__(
        self,
        url: str,
        *,
        system_url: str,
        asynchronous: bool = False,
        options: DatabaseOptions | None = None,
    ) -> None:
        options = options or DatabaseOptions()
        caller_engine = options.engine or options.async_engine
        if caller_engine is not None:  # the caller's engine says where transactions go
            url = caller_engine.url.render_as_string(hide_password=False)
        url = sqlalchemy_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_system_database = url == sqlalchemy_url(system_url)
        self.asynchronous = asynchronous
        self.serializer = options.serializer
        self._options = options
        self._kwargs = _engine_kwargs(options.engine_kwargs, sqlite=self.is_sqlite)
        self._engine: sa.Engine | None = options.engine
        if self._engine is None and not asynchronous:  # connects only when used
            self._engine = sa.create_engine(url, **self._kwargs)
            if self.is_sqlite:
                _begin_immediate(self._engine)
        # Async connections belong to the event loop that opened them: one pool per loop
        # (a workflow may run on the caller's loop or on Perdure's own).
        self._async_engines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncEngine, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()
        self.table = CheckpointTable(self.is_sqlite, options.schema)
        if self.is_system_database:
            self.checkpoint_sql = _system_checkpoint_sql("" if self.is_sqlite else "perdure.")
        else:
            table = self.table.name
            self.checkpoint_sql = sa.text(
                f"INSERT INTO {table} ({', '.join(_APP_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _APP_COLUMNS)}) "
                "ON CONFLICT (workflow_id, function_id) DO NOTHING"
            )
            self._lookup_sql = sa.text(
                f"SELECT output, error, serialization, function_name FROM {table} "
                "WHERE workflow_id = :workflow_id AND function_id = :function_id"
            )

    @property
    def engine(self) -> sa.Engine:
        """The engine of a synchronous database."""
        if self._engine is None:
            raise TypeError("An asynchronous application database has no synchronous engine.")
        return self._engine

    # -- the checkpoint table ------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the checkpoint table in a separate application database if missing."""
        if not self.is_system_database:
            with self.engine.begin() as conn:
                self.table.create(conn)

    def check_schema(self) -> None:
        """Make sure a separate application database has its checkpoint table; create nothing."""
        if not self.is_system_database:
            with self.engine.connect() as conn:
                self.table.check(conn)

    async def ensure_schema_async(self) -> None:
        """`ensure_schema` on the running loop's async engine."""
        if not self.is_system_database:
            async with (await self.async_engine()).begin() as conn:
                await conn.run_sync(self.table.create)

    async def check_schema_async(self) -> None:
        """`check_schema` on the running loop's async engine."""
        if not self.is_system_database:
            async with (await self.async_engine()).connect() as conn:
                await conn.run_sync(self.table.check)

    def committed_checkpoint(self, workflow_id: str, function_id: int) -> StepRow | None:
        """A transaction checkpoint committed here but perhaps not yet copied to the system."""
        if self.is_system_database:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                self._lookup_sql, {"workflow_id": workflow_id, "function_id": function_id}
            ).first()
        return _step(workflow_id, function_id, row)

    async def committed_checkpoint_async(
        self, workflow_id: str, function_id: int
    ) -> StepRow | None:
        """`committed_checkpoint` on the running loop's async engine."""
        if self.is_system_database:
            return None
        async with (await self.async_engine()).connect() as conn:
            found = await conn.execute(
                self._lookup_sql, {"workflow_id": workflow_id, "function_id": function_id}
            )
            row = found.first()
        return _step(workflow_id, function_id, row)

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def session(self, isolation_level: str) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        options = {} if self.is_sqlite else {"isolation_level": isolation_level}
        with (
            self.engine.connect().execution_options(**options) as conn,
            self._options.sessions(bind=conn) as session,
            session.begin(),
        ):
            yield session

    async def async_engine(self) -> AsyncEngine:
        """The async engine of the running event loop (an `AsyncSQLAlchemyDatasource`)."""
        if self._options.async_engine is not None:
            return self._options.async_engine
        loop = asyncio.get_running_loop()
        with self._async_lock:
            found = self._async_engines.get(loop)
        if found is not None:
            return found[0]
        url = self.url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        engine = create_async_engine(url, **self._kwargs)
        if self.is_sqlite:
            _begin_immediate(engine.sync_engine)
        closer = _dispose_at_loop_shutdown(engine)
        await closer.__anext__()
        with self._async_lock:
            self._async_engines[loop] = (engine, closer)
        return engine

    @asynccontextmanager
    async def async_session(self, isolation_level: str) -> AsyncIterator[AsyncSession]:
        """`session` on the running loop's async engine."""
        options = {} if self.is_sqlite else {"isolation_level": isolation_level}
        async with (await self.async_engine()).connect() as opened:
            conn = await opened.execution_options(**options)
            async with self._options.async_sessions(bind=conn) as session, session.begin():
                yield session

    def owns(self, session: Session | AsyncSession) -> bool:
        """Whether ``session`` is one of this database's transactions."""
        bind = session.bind
        engine = getattr(bind, "engine", bind)
        if isinstance(session, AsyncSession):
            if self._options.async_engine is not None:
                return engine is self._options.async_engine
            with self._async_lock:
                return any(engine is e for e, _ in self._async_engines.values())
        return engine is self._engine

    def is_conflict(self, exc: BaseException) -> bool:
        """A serialization failure or a deadlock: the transaction may succeed if tried again."""
        if not isinstance(exc, sa.exc.DBAPIError) or self.is_sqlite:
            return False
        return getattr(exc.orig, "sqlstate", None) in _CONFLICT_SQLSTATES

    def is_unavailable(self, exc: BaseException) -> bool:
        """The database is away (a restart, a failover, a partition, a busy SQLite file, an
        exhausted pool): the transaction did not happen and is tried again when it is back."""
        if isinstance(exc, sa.exc.TimeoutError):  # no connection free in the pool
            return True
        if not isinstance(exc, sa.exc.DBAPIError):
            return False
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and is_connection_failure(exc.orig)

    def dispose(self) -> None:
        """Close the connections of the engines Perdure created (never the caller's)."""
        if self._engine is not None and self._options.engine is None:
            self._engine.dispose()
        with self._async_lock:
            engines = list(self._async_engines.values())
            self._async_engines.clear()
        for engine, _ in engines:
            # Drop pooled async connections without awaiting their close: their event loop
            # may be running another thread's work (it closes them when it shuts down).
            engine.sync_engine.dispose(close=False)

    async def dispose_async(self) -> None:
        """`dispose`, closing the running loop's connections rather than dropping them."""
        with self._async_lock:
            found = self._async_engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].dispose()
        self.dispose()


def _system_checkpoint_sql(prefix: str) -> sa.TextClause:
    """The checkpoint insert into the system database's own step table.

    Written only while this execution owns the PENDING workflow, so a cancel or a takeover
    also rolls back the user's writes.
    """
    columns = ", ".join(STEP_COLUMNS)
    params = ", ".join(f":{c}" for c in STEP_COLUMNS)
    return sa.text(
        f"INSERT INTO {prefix}operation_outputs ({columns}) SELECT {params} "
        f"WHERE EXISTS (SELECT 1 FROM {prefix}workflow_status "
        "WHERE workflow_id = :workflow_id AND status = 'PENDING' "
        "AND owner_token = :owner_token) "
        "ON CONFLICT (workflow_id, function_id) DO NOTHING"
    )


def _step(workflow_id: str, function_id: int, row: sa.Row[Any] | None) -> StepRow | None:
    if row is None:
        return None
    output, error, serialization, name = tuple(row)
    return StepRow(workflow_id, function_id, name, output, error, None, serialization, 0, 0)


def _engine_kwargs(given: Mapping[str, Any], *, sqlite: bool) -> dict[str, Any]:
    """``engine_kwargs`` for ``create_engine``; on SQLite without libpq-only connect_args."""
    kwargs = dict(given)
    connect_args = kwargs.get("connect_args")
    if sqlite and isinstance(connect_args, Mapping):
        kwargs["connect_args"] = {
            k: v for k, v in connect_args.items() if k not in _PG_ONLY_CONNECT_ARGS
        }
    return kwargs


async def _dispose_at_loop_shutdown(engine: AsyncEngine) -> AsyncGenerator[None, None]:
    """Suspended until its event loop shuts down its async generators (``asyncio.run`` does,
    before it closes the loop): then it closes the engine's connections on that loop."""
    try:
        yield
    finally:
        await engine.dispose()


def _begin_immediate(engine: sa.Engine) -> None:
    """Make SQLite transactions take the write lock at BEGIN (no lock-upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()  # sqlite3's or aiosqlite's adapted connection
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
