"""PostgreSQL connections: schema ``perdure``, psycopg 3 with a connection pool."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from perdure.error import DBOSInitializationError, DBOSSystemDatabaseError
from perdure.storage.database import (
    Chain,
    Database,
    Dialect,
    ErrorKind,
    Params,
    Result,
    Tx,
)
from perdure.storage.migrations import load_migrations, pending_migrations
from perdure.storage.postgres.connect import (
    CONNECT_TIMEOUT_SEC,
    CONNECTION_OPTIONS,
    classify_error,
    psycopg_conninfo,
    wait_until_reachable,
)
from perdure.storage.postgres.listener import NotificationListener
from perdure.storage.postgres.notes import NoteReader
from perdure.storage.records import STEP_COLUMNS, ExecutorRecord
from perdure.storage.sql import executors
from perdure.storage.store import NoteHandler
from perdure.storage.urls import redact_url

T = TypeVar("T")
logger = logging.getLogger(__name__)

SCHEMA = "perdure"
INSUFFICIENT_PRIVILEGE = "42501"
# Any constant works: it only has to be the same for every Perdure process.
MIGRATION_LOCK_KEY = 0x7065_7264_7572
# How long a statement waits for a pool connection before it is retried (with a log line).
POOL_WAIT_SEC = 5.0

# Several step checkpoints in one statement; each is written only while its workflow is
# PENDING under the step's owner token and its position is free. RETURNING names those written.
_STEP_TYPES = (
    "text",
    "int",
    "text",
    "bytea",
    "bytea",
    "text",
    "text",
    "bigint",
    "bigint",
    "bigint",
)
INSERT_STEPS = (
    f"INSERT INTO {{p}}operation_outputs ({', '.join(STEP_COLUMNS)}) "
    f"SELECT v.* FROM unnest({', '.join(f'?::{t}[]' for t in _STEP_TYPES)}) "
    f"AS v({', '.join(STEP_COLUMNS)}) WHERE EXISTS (SELECT 1 FROM {{p}}workflow_status w "
    "WHERE w.workflow_id = v.workflow_id AND w.status = 'PENDING' "
    "AND w.owner_token = v.owner_token) "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING RETURNING workflow_id, function_id"
)

DIALECT = Dialect(
    name="postgres",
    prefix=f"{SCHEMA}.",
    placeholder="%s",
    now="(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
    blob="BYTEA",
    bigint="BIGINT",
    text="TEXT",
    lock="FOR UPDATE",
    binary_collation=' COLLATE "C"',
    skip_locked="FOR UPDATE SKIP LOCKED",
    row_locks=True,
    batch_steps=INSERT_STEPS,
)


class _Held:
    """A pool connection one thread keeps for the length of a workflow execution."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._conn: psycopg.Connection[Any] | None = None
        self._cursor: psycopg.Cursor[Any] | None = None
        self.depth = 1

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self._pool.getconn(POOL_WAIT_SEC)
            self._cursor = None
        return self._conn

    def cursor(self) -> psycopg.Cursor[Any]:
        """One cursor reused for every statement: no per-statement cursor set-up."""
        if self._cursor is None:
            self._cursor = self.connection().cursor()
        return self._cursor

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._cursor = self._conn, None, None
            self._pool.putconn(conn)  # the pool closes it if broken or if the pool is closed


class _Tx(Tx):
    def __init__(self, database: PostgresDatabase, conn: psycopg.Connection[Any], attempt: int):
        self._database = database
        self._conn = conn
        self.attempt = attempt

    def run(self, sql_text: str, params: Params = ()) -> Result:
        rendered = self._database.dialect.render(sql_text)
        return self._database._statement(self._conn, rendered, params)


class PostgresDatabase(Database):
    """A PostgreSQL system database, shared by any number of processes."""

    dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        create: bool,
        wait_limit_sec: float | None,
        connect_wait_sec: float,
    ) -> None:
        super().__init__(wait_limit_sec=wait_limit_sec)
        self.url = url
        self.conninfo = psycopg_conninfo(url)
        self._held = threading.local()
        self.notes = NoteReader(None)  # replaced by `listen`, with the database's key
        wait_until_reachable(url, create=create, wait_sec=connect_wait_sec)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=max(2, max_connections),
            # prepare_threshold=0: every statement is prepared server-side on first use.
            kwargs={"autocommit": True, "prepare_threshold": 0, **CONNECTION_OPTIONS},
            name="perdure-system-db",
            timeout=POOL_WAIT_SEC,
            # The pool's reconnection backs off without bound (1, 2, 4 ... seconds): after a
            # long outage its next attempt could come a minute after the server is back. A
            # short attempt ends before its delays grow; Perdure's own retries (which never
            # give up) start the next one, whose first try is immediate.
            reconnect_timeout=POOL_WAIT_SEC,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except PoolTimeout as exc:
            self._pool.close()
            raise DBOSInitializationError(
                f"Cannot connect to the system database {redact_url(url)}: no connection within "
                "10 seconds. Check that PostgreSQL is running and the URL (host, port, user, "
                "password, database) is right."
            ) from exc

    def classify(self, exc: BaseException) -> ErrorKind | None:
        return classify_error(exc)

    def _statement(
        self,
        target: psycopg.Connection[Any] | psycopg.Cursor[Any],
        sql_text: str,
        params: Params,
    ) -> Result:
        self._notify_statement(sql_text)
        cursor = target.execute(sql_text, params)
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)

    def _execute(self, sql_text: str, params: Params) -> Result:
        held: _Held | None = getattr(self._held, "value", None)
        if held is None:
            with self._pool.connection(POOL_WAIT_SEC) as conn:
                return self._statement(conn, sql_text, params)
        try:
            return self._statement(held.cursor(), sql_text, params)
        except psycopg.Error:
            held.release()  # perhaps broken: the retry takes a fresh one from the pool
            raise

    def _transact(self, work: Callable[[Tx], T], attempt: int) -> T:
        held: _Held | None = getattr(self._held, "value", None)
        if held is None:
            with self._pool.connection(POOL_WAIT_SEC) as conn:
                return self._in_transaction(conn, work, attempt)
        try:
            # The held connection, not a second one: a thread never waits on the pool for a
            # connection while it keeps another.
            return self._in_transaction(held.connection(), work, attempt)
        except psycopg.Error:
            held.release()
            raise

    def _in_transaction(
        self, conn: psycopg.Connection[Any], work: Callable[[Tx], T], attempt: int
    ) -> T:
        self._notify_statement("BEGIN")
        with conn.transaction():
            result = work(_Tx(self, conn, attempt))
            self._notify_statement("COMMIT")
        return result

    def _run_chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        """One statement: the parts as data-modifying CTEs, then the final query."""
        statement, flat = chain_statement(self.dialect, chain, params)
        return self._execute(statement, flat)

    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> NotificationListener:
        # The key that signs hand-off notes (migration 0010); read once, never logged.
        key = self.run(f"SELECT key FROM {SCHEMA}.notification_key").rows
        self.notes = NoteReader(bytes(key[0][0]) if key else None)
        listener = NotificationListener(
            self.conninfo, lambda note: on_note(*self.notes.read(note)), on_gap
        )
        listener.start()
        return listener

    @contextmanager
    def hold_connection(self) -> Iterator[None]:
        """Keep one pool connection for this thread while a workflow runs here.

        Its steps then skip the pool's check-out and check-in (about 50 microseconds each).
        Nested holds share the connection; it goes back to the pool when the outermost ends,
        and meanwhile whenever the workflow waits (`released`).
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

    @contextmanager
    def released(self) -> Iterator[None]:
        held: _Held | None = getattr(self._held, "value", None)
        if held is None:
            yield
            return
        held.release()
        self._held.value = None  # statements meanwhile borrow a connection each
        try:
            yield
        finally:
            self._held.value = held  # takes a connection again at its next statement

    def migrate(self) -> None:
        # A schema already current needs no DDL: an application role without the right to
        # create anything (the owner ran `perdure migrate`) launches with reads alone.
        current = self.schema_version()
        if current is not None and not pending_migrations(
            load_migrations("postgres"), current, url=redact_url(self.url)
        ):
            return
        try:
            self.transaction(self._apply_migrations)
        except DBOSSystemDatabaseError as exc:
            if exc.sqlstate != INSUFFICIENT_PRIVILEGE:
                raise
            raise DBOSInitializationError(
                f"The system database {redact_url(self.url)} needs its schema created or "
                f"upgraded (to version {load_migrations('postgres')[-1].version}), and this "
                f"role may not do it ({exc}). Run `perdure --db <owner URL> migrate --app-role "
                "<this role>` as the role that owns the schema, then launch again."
            ) from exc

    def _apply_migrations(self, tx: Tx) -> None:
        # Serialises concurrent launches; released when this transaction ends.
        tx.run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
        tx.run(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        table = f"{SCHEMA}.schema_migrations"
        tx.run(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY)")
        current = tx.run(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA}.schema_migrations")
        todo = pending_migrations(
            load_migrations("postgres"), current.rows[0][0], url=redact_url(self.url)
        )
        for migration in todo:
            for statement in migration.statements:
                tx.run(statement)
            tx.run(
                f"INSERT INTO {SCHEMA}.schema_migrations (version) VALUES (?)",
                (migration.version,),
            )

    def reset(self) -> None:
        self.transaction(lambda tx: tx.run(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))

    def schema_version(self) -> int | None:
        found = self.run("SELECT to_regclass(?)", (f"{SCHEMA}.schema_migrations",)).rows
        if found[0][0] is None:
            return None
        rows = self.run(f"SELECT MAX(version) FROM {SCHEMA}.schema_migrations").rows
        return int(rows[0][0]) if rows[0][0] is not None else None

    def open_liveness(self, record: ExecutorRecord) -> PostgresLiveness:
        return PostgresLiveness(self, record)

    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        return _free_lock_keys(self, keys)

    def _close_connections(self) -> None:
        self._pool.close()


def chain_statement(
    dialect: Dialect, chain: Chain, params: Mapping[str, Params]
) -> tuple[str, list[Any]]:
    """A chain as one statement (its parts as data-modifying CTEs) and its parameters."""
    key = f"chain:{chain.name}"
    statement = dialect.rendered.get(key)
    if statement is None:
        statement = dialect.rendered[key] = _render_chain(dialect, chain)
    return statement, [
        value for name in (*chain.part_names, "final") for value in params.get(name, ())
    ]


def _render_chain(dialect: Dialect, chain: Chain) -> str:
    parts = ", ".join(f"{p.name} AS ({_refs(p.sql, chain)})" for p in chain.parts)
    return dialect.render(f"WITH {parts} {_refs(chain.final, chain)}")


def _refs(sql_text: str, chain: Chain) -> str:
    for name in chain.part_names:
        sql_text = sql_text.replace("{@" + name + "}", name)
    return sql_text


class PostgresLiveness:
    """A connection of this process's own, holding a session-level advisory lock.

    The server releases the lock as soon as the session ends: when the process dies, its
    socket closes and the lock is free within milliseconds. A partition keeps the session
    until TCP keepalives give up; the heartbeat's silence covers that case.
    """

    def __init__(self, database: PostgresDatabase, record: ExecutorRecord) -> None:
        self._database = database
        self._record = record
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._beat_sql = database.dialect.render(executors.BEAT)

    def beat(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = psycopg.connect(
                    self._database.conninfo,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SEC,
                    **CONNECTION_OPTIONS,
                )
            if not self._held:
                # A session of ours that the server has not yet seen die may still hold it:
                # then it proves us alive until we take it over.
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self._record.lock_key,)
                ).fetchone()
                self._held = bool(row and row[0])
            self._conn.execute(self._beat_sql, executors.beat_params(self._record))
        except psycopg.Error:
            self._drop()
            raise
        return self._held

    def update(self, record: ExecutorRecord) -> None:
        self._record = record

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._drop()  # ending the session releases the lock


def _free_lock_keys(database: PostgresDatabase, keys: tuple[int, ...]) -> set[int]:
    if not keys:
        return set()
    # A transaction-level lock, released as the statement's transaction ends: only a probe.
    rows = database.run(FREE_KEYS, (list(keys),)).rows
    return {int(r[0]) for r in rows}


FREE_KEYS = "SELECT k FROM unnest(CAST(? AS BIGINT[])) AS k WHERE pg_try_advisory_xact_lock(k)"
