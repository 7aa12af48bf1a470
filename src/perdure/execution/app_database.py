"""The database of ``@DBOS.transaction`` functions, reached through SQLAlchemy.

A transaction's checkpoint commits inside the user's own transaction. When the application
database is the system database (the default), it goes straight into ``operation_outputs``;
otherwise into a ``transaction_outputs`` table in the application database, copied into the
system database after commit and looked up there if a crash came in between.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from perdure.storage import is_connection_failure
from perdure.storage.records import STEP_COLUMNS, StepRow

# PostgreSQL SQLSTATEs a transaction retries at once: serialization_failure, deadlock_detected.
_CONFLICT_SQLSTATES = ("40001", "40P01")
_APP_COLUMNS = ("workflow_id", "function_id", "function_name", "output", "error", "serialization")


def sqlalchemy_url(url: str) -> str:
    """A SQLAlchemy URL using the psycopg 3 driver for PostgreSQL (which SQLAlchemy runs
    async on an async engine) and the standard library's for SQLite."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg_async"):
        return "postgresql+psycopg://" + rest
    if scheme == "sqlite+aiosqlite":
        return "sqlite://" + rest
    return url


class ApplicationDatabase:
    """SQLAlchemy engine for transactions and the SQL of their in-transaction checkpoint."""

    def __init__(self, url: str, *, system_url: str) -> None:
        url = sqlalchemy_url(url)
        self.is_sqlite = url.startswith("sqlite")
        self.is_system_database = url == sqlalchemy_url(system_url)
        # The sync engine also serves an async datasource's rare reads (a checkpoint after a
        # crash) and its schema setup; it connects only when used.
        self.engine = sa.create_engine(url)
        self.url = url
        # Async connections belong to the event loop that opened them: one pool per loop
        # (a workflow may run on the caller's loop or on Perdure's own).
        self._async_engines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncEngine, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()
        if self.is_sqlite:
            _begin_immediate(self.engine)
        prefix = "" if self.is_sqlite else "perdure."
        if self.is_system_database:
            columns = ", ".join(STEP_COLUMNS)
            params = ", ".join(f":{c}" for c in STEP_COLUMNS)
            # Written only while this execution owns the PENDING workflow, so a cancel or a
            # takeover also rolls back the user's writes.
            self.checkpoint_sql = sa.text(
                f"INSERT INTO {prefix}operation_outputs ({columns}) SELECT {params} "
                f"WHERE EXISTS (SELECT 1 FROM {prefix}workflow_status "
                "WHERE workflow_id = :workflow_id AND status = 'PENDING' "
                "AND owner_token = :owner_token) "
                "ON CONFLICT (workflow_id, function_id) DO NOTHING"
            )
        else:
            table = (
                "perdure_transaction_outputs" if self.is_sqlite else "perdure.transaction_outputs"
            )
            self._table = table
            self.checkpoint_sql = sa.text(
                f"INSERT INTO {table} ({', '.join(_APP_COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in _APP_COLUMNS)}) "
                "ON CONFLICT (workflow_id, function_id) DO NOTHING"
            )
            self._lookup_sql = sa.text(
                f"SELECT output, error, serialization, function_name FROM {table} "
                "WHERE workflow_id = :workflow_id AND function_id = :function_id"
            )

    def ensure_schema(self) -> None:
        """Create the checkpoint table in a separate application database if missing."""
        if self.is_system_database:
            return
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Serialises concurrent launches creating the schema.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7070657264757265)"))
                conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS perdure"))
            blob = "BLOB" if self.is_sqlite else "BYTEA"
            conn.execute(
                sa.text(
                    f"CREATE TABLE IF NOT EXISTS {self._table} (workflow_id TEXT NOT NULL, "
                    "function_id INTEGER NOT NULL, function_name TEXT NOT NULL, "
                    f"output {blob}, error {blob}, serialization TEXT NOT NULL, "
                    "PRIMARY KEY (workflow_id, function_id))"
                )
            )

    def committed_checkpoint(self, workflow_id: str, function_id: int) -> StepRow | None:
        """A transaction checkpoint committed here but perhaps not yet copied to the system."""
        if self.is_system_database:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                self._lookup_sql, {"workflow_id": workflow_id, "function_id": function_id}
            ).first()
        if row is None:
            return None
        output, error, serialization, name = row
        return StepRow(workflow_id, function_id, name, output, error, None, serialization, 0, 0)

    @contextmanager
    def session(self, isolation_level: str) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        options = {} if self.is_sqlite else {"isolation_level": isolation_level}
        with (
            self.engine.connect().execution_options(**options) as conn,
            Session(bind=conn) as session,
            session.begin(),
        ):
            yield session

    async def async_engine(self) -> AsyncEngine:
        """The async engine of the running event loop (an `AsyncSQLAlchemyDatasource`)."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            found = self._async_engines.get(loop)
        if found is not None:
            return found[0]
        url = self.url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        engine = create_async_engine(url)
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
            async with AsyncSession(bind=conn) as session, session.begin():
                yield session

    def owns(self, session: Session | AsyncSession) -> bool:
        """Whether ``session`` is one of this database's transactions."""
        bind = session.bind
        engine = getattr(bind, "engine", bind)
        if isinstance(session, AsyncSession):
            with self._async_lock:
                return any(engine is e for e, _ in self._async_engines.values())
        return engine is self.engine

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
        """Close the engines' connections."""
        self.engine.dispose()
        with self._async_lock:
            engines = list(self._async_engines.values())
            self._async_engines.clear()
        for engine, _ in engines:
            # Drop pooled async connections without awaiting their close: their event loop
            # may be running another thread's work (it closes them when it shuts down).
            engine.sync_engine.dispose(close=False)


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
