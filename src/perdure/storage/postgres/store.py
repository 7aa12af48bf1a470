"""PostgreSQL system store: schema ``perdure``, psycopg 3 with a connection pool."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from perdure.error import DBOSInitializationError
from perdure.storage import redact_url
from perdure.storage.interface import STEP_COLUMNS, StepRow, mark_unavailable
from perdure.storage.migrations import load_migrations, pending_migrations
from perdure.storage.sql_backend import step_params
from perdure.storage.sql_store import Params, Rows, SqlStore, Statements

T = TypeVar("T")
logger = logging.getLogger(__name__)

SCHEMA = "perdure"
# Any constant works: it only has to be the same for every Perdure process.
MIGRATION_LOCK_KEY = 0x7065_7264_7572
# How long operations keep retrying while the database is unreachable (e.g. restarting).
RECONNECT_DEADLINE_SEC = 60.0
CONNECT_TIMEOUT_SEC = 5


def psycopg_conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def _create_database(url: str) -> None:
    """Create the database ``url`` names, connecting to the server's ``postgres`` database."""
    info = conninfo_to_dict(psycopg_conninfo(url))
    name = str(info.pop("dbname"))
    info["dbname"] = "postgres"
    with psycopg.connect(make_conninfo("", **info), autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            logger.info("Created system database %r", name)
        except psycopg.errors.DuplicateDatabase:
            pass  # another process created it first


def _check_reachable(url: str, *, create: bool) -> None:
    """Connect once (creating a missing database if asked), so a bad URL fails fast."""
    try:
        try:
            psycopg.connect(psycopg_conninfo(url), connect_timeout=CONNECT_TIMEOUT_SEC).close()
        except psycopg.OperationalError as exc:
            if not create or "does not exist" not in str(exc) or "database" not in str(exc):
                raise
            _create_database(url)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DBOSInitializationError(
            f"Cannot connect to the system database {redact_url(url)}: {reason}. Check that "
            "PostgreSQL is running and that the URL's host, port, user, password and database "
            "are right."
        ) from exc


class _Statements(Statements):
    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn = conn

    def run(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        return self._store._run(self._conn, sql_text, params)


class _Held:
    """A pool connection one thread keeps for the length of a workflow execution."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._conn: psycopg.Connection[Any] | None = None
        self._cursor: psycopg.Cursor[Any] | None = None
        self.depth = 1

    def cursor(self) -> psycopg.Cursor[Any]:
        """One cursor reused for every statement: no per-statement cursor set-up."""
        if self._cursor is None:
            self._conn = self._pool.getconn()
            self._cursor = self._conn.cursor()
        return self._cursor

    def discard(self) -> None:
        self.release()

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._cursor = self._conn, None, None
            self._pool.putconn(conn)  # the pool closes it if broken or if the pool is closed


# Several step checkpoints in one statement; each is written only while its workflow is PENDING
# and its position free. RETURNING names the ones written.
_STEP_TYPES = ("text", "int", "text", "bytea", "bytea", "text", "text", "bigint", "bigint")
INSERT_STEPS_IF_PENDING = (
    f"INSERT INTO {{p}}operation_outputs ({', '.join(STEP_COLUMNS)}) "
    f"SELECT v.* FROM unnest({', '.join(f'?::{t}[]' for t in _STEP_TYPES)}) "
    f"AS v({', '.join(STEP_COLUMNS)}) WHERE EXISTS (SELECT 1 FROM {{p}}workflow_status w "
    "WHERE w.workflow_id = v.workflow_id AND w.status = 'PENDING') "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING RETURNING workflow_id, function_id"
)


class PostgresStore(SqlStore):
    """`SystemStore` on PostgreSQL, shared by any number of processes."""

    prefix = f"{SCHEMA}."
    placeholder = "%s"
    backend_name = "postgres"

    def __init__(self, url: str, *, max_connections: int = 16, create: bool = True) -> None:
        super().__init__()
        self.url = url
        self._held = threading.local()
        self._closed = False
        _check_reachable(url, create=create)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            psycopg_conninfo(url),
            min_size=1,
            max_size=max(2, max_connections),
            # prepare_threshold=0: every statement is prepared server-side on first use.
            kwargs={"autocommit": True, "prepare_threshold": 0},
            name="perdure-system-db",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except PoolTimeout as exc:
            self._pool.close()
            raise DBOSInitializationError(
                f"Cannot connect to the system database {redact_url(url)}: no connection within 10 "
                "seconds. Check that PostgreSQL is running and the URL (host, port, user, "
                "password, database) is right."
            ) from exc

    def _run(
        self,
        target: psycopg.Connection[Any] | psycopg.Cursor[Any],
        sql_text: str,
        params: Params,
    ) -> tuple[Rows, int]:
        self._notify_statement(sql_text)
        cursor = target.execute(sql_text, params)
        rows = cursor.fetchall() if cursor.description is not None else []
        return rows, cursor.rowcount

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, retrying while the connection is lost (e.g. a server restart)."""
        deadline = time.monotonic() + RECONNECT_DEADLINE_SEC
        delay = 0.05
        while True:
            try:
                if self._closed:
                    raise PoolClosed("the Perdure system store is closed")  # noqa: TRY301
                return attempt()
            except PoolClosed as exc:
                mark_unavailable(exc)  # closed on purpose: nothing to wait for
                raise
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    mark_unavailable(exc)
                    raise
                logger.warning("System database unreachable (%s); retrying in %.2fs", exc, delay)
                time.sleep(delay)  # back-off before reconnecting, not synchronisation
                delay = min(delay * 2, 2.0)

    def _write_steps(self, steps: Sequence[StepRow]) -> list[bool]:
        # One statement for the whole batch: the steps travel as one array per column.
        columns = [list(values) for values in zip(*(step_params(s) for s in steps), strict=True)]
        rows, _ = self._autocommit(self._q(INSERT_STEPS_IF_PENDING), columns)
        recorded = {(workflow_id, function_id) for workflow_id, function_id in rows}
        return [(s.workflow_id, s.function_id) in recorded for s in steps]

    def _autocommit(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        def attempt() -> tuple[Rows, int]:
            held: _Held | None = getattr(self._held, "value", None)
            if held is None:
                with self._pool.connection() as conn:
                    return self._run(conn, sql_text, params)
            try:
                return self._run(held.cursor(), sql_text, params)
            except psycopg.OperationalError:
                held.discard()  # broken: the retry takes a fresh one from the pool
                raise

        return self._retrying(attempt)

    @contextmanager
    def hold_connection(self) -> Iterator[None]:
        """Keep one pool connection for this thread while a workflow runs here.

        Its steps then skip the pool's check-out and check-in (about 50 microseconds each).
        Nested holds share the connection; it goes back to the pool when the outermost ends.
        """
        held: _Held | None = getattr(self._held, "value", None)
        if held is not None:
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        held = self._held.value = _Held(self._pool)
        try:
            yield
        finally:
            self._held.value = None
            held.release()

    def _transaction(self, work: Callable[[Statements], T]) -> T:
        def attempt() -> T:
            with self._pool.connection() as conn:
                self._notify_statement("BEGIN")
                with conn.transaction():
                    result = work(_Statements(self, conn))
                    self._notify_statement("COMMIT")
                return result

        return self._retrying(attempt)

    def migrate(self) -> None:
        def apply(tx: Statements) -> None:
            # Serialises concurrent launches; released when this transaction ends.
            tx.run("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            tx.run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", ())
            tx.run(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations "
                "(version INTEGER PRIMARY KEY)",
                (),
            )
            rows, _ = tx.run(
                f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA}.schema_migrations", ()
            )
            todo = pending_migrations(
                load_migrations("postgres"), rows[0][0], url=redact_url(self.url)
            )
            for migration in todo:
                for statement in migration.statements:
                    tx.run(statement, ())
                tx.run(
                    f"INSERT INTO {SCHEMA}.schema_migrations (version) VALUES (%s)",
                    (migration.version,),
                )

        self._transaction(apply)

    def reset(self) -> None:
        def drop(tx: Statements) -> None:
            tx.run(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE", ())

        self._transaction(drop)

    def close(self) -> None:
        # Connections held by workflows still running must not be used after this either.
        self._closed = True
        self._pool.close()
