"""SQLite connections: one WAL-mode connection per process, shared by its threads under a lock."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from perdure.error import DBOSInitializationError
from perdure.storage.migrations import created_tables, load_migrations, pending_migrations
from perdure.storage.records import ExecutorRecord
from perdure.storage.sql import executors
from perdure.storage.store import Listening, NoteHandler

try:
    import fcntl
except ImportError:  # not POSIX (Windows): crashes are seen by the heartbeat's silence only
    fcntl = None  # type: ignore[assignment]  # checked before each use
from perdure.storage.database import (
    Chain,
    Database,
    Dialect,
    ErrorKind,
    Params,
    Result,
    Tx,
)

T = TypeVar("T")

# How long a statement waits inside SQLite for another process holding the write lock before
# it reports "busy"; Perdure then keeps retrying with backoff for as long as it lasts.
BUSY_TIMEOUT_SEC = 5.0

DIALECT = Dialect(
    name="sqlite",
    prefix="",
    placeholder="?",
    now="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    blob="BLOB",
    bigint="INTEGER",
    text="TEXT",
    lock="",
    binary_collation="",
    skip_locked="",
    row_locks=False,
)

# Messages of SQLite's OperationalError that mean "try again later", not "broken".
_BUSY = ("database is locked", "database table is locked", "database is busy")


def classify_error(exc: BaseException) -> ErrorKind | None:
    """What a sqlite3 error means (None: not sqlite3's)."""
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return ErrorKind.UNIQUE
    if isinstance(exc, sqlite3.OperationalError) and any(b in str(exc) for b in _BUSY):
        return ErrorKind.CONNECTION
    if isinstance(exc, sqlite3.Error):
        return ErrorKind.FATAL
    return None


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:///:memory:`` is refused)."""
    path = url.removeprefix("sqlite:///")
    if path in ("", ":memory:"):
        raise DBOSInitializationError(
            f"System database URL {url!r} has no file path; an in-memory database cannot survive "
            "a crash. Use sqlite:///path/to/app.sqlite."
        )
    return path


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with full durability; we issue BEGIN ourselves."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SEC, isolation_level=None, check_same_thread=False
    )
    # A file Perdure created is in WAL mode already, and reading the mode takes no lock that
    # a writer holds: a process paused in the middle of a write elsewhere (a SIGSTOP, a long
    # GC pause) then does not stop this one from opening the file to take its work over.
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a checkpoint survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _Tx(Tx):
    def __init__(self, database: SqliteDatabase, attempt: int) -> None:
        self._database = database
        self.attempt = attempt

    def run(self, sql: str, params: Params = ()) -> Result:
        return self._database._statement(self._database.dialect.render(sql), params)


class SqliteDatabase(Database):
    """The SQLite file of one system database."""

    dialect = DIALECT

    def __init__(self, url: str, *, wait_limit_sec: float | None) -> None:
        super().__init__(wait_limit_sec=wait_limit_sec)
        self.url = url
        self.path = sqlite_path(url)
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise DBOSInitializationError(
                f"Cannot open the system database {url!r}: folder {str(parent)!r} does not "
                "exist. Create it or point system_database_url elsewhere."
            )
        try:
            self._conn = connect(self.path)
        except sqlite3.Error as exc:
            raise DBOSInitializationError(
                f"Cannot open the SQLite system database {url!r}: {exc}. Check the path and "
                "its permissions."
            ) from exc
        self._lock = threading.Lock()
        self._chains = ChainRunner(self._conn, self._notify_statement)
        self.lock_file = LockFile(self.path)

    def classify(self, exc: BaseException) -> ErrorKind | None:
        return classify_error(exc)

    def _statement(self, sql: str, params: Params) -> Result:
        """One statement on the shared connection (the caller holds the lock)."""
        self._notify_statement(sql)
        cursor = self._conn.execute(sql, params)
        rows = cursor.fetchall()
        return Result(rows, cursor.rowcount if cursor.rowcount >= 0 else len(rows))

    def _execute(self, sql: str, params: Params) -> Result:
        with self._lock:
            return self._statement(sql, params)

    def _transact(self, work: Callable[[Tx], T], attempt: int) -> T:
        with self._lock, self._write_transaction():
            return work(_Tx(self, attempt))

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock later.
        self._statement("BEGIN IMMEDIATE", ())
        try:
            yield
            self._statement("COMMIT", ())
        except BaseException:
            # Also when COMMIT itself failed (busy): the shared connection must not stay
            # inside the transaction, or every later statement of every thread would join it.
            if self._conn.in_transaction:
                self._statement("ROLLBACK", ())
            raise

    def _run_chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        """The parts in order in one write transaction; each part's rows go to a temp table."""
        with self._lock:
            try:
                with self._write_transaction():
                    return self._chains.run(chain, params)
            except BaseException:
                self._chains.forget()  # rolled back (also when COMMIT itself failed)
                raise

    def migrate(self) -> None:
        def apply(tx: Tx) -> None:
            tx.run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            current = tx.run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").rows
            todo = pending_migrations(load_migrations("sqlite"), current[0][0], url=self.url)
            for migration in todo:
                for statement in migration.statements:
                    tx.run(statement)
                tx.run("INSERT INTO schema_migrations (version) VALUES (?)", (migration.version,))

        self.transaction(apply)

    def reset(self) -> None:
        # Only Perdure's own tables: by default the application shares this file.
        tables = [*created_tables(load_migrations("sqlite")), "schema_migrations"]

        def drop(tx: Tx) -> None:
            for name in tables:
                tx.run(f'DROP TABLE IF EXISTS "{name}"')

        self.transaction(drop)

    def schema_version(self) -> int | None:
        found = self.run(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).rows
        if not found:
            return None
        rows = self.run("SELECT MAX(version) FROM schema_migrations").rows
        return int(rows[0][0]) if rows[0][0] is not None else None

    def open_liveness(self, record: ExecutorRecord) -> SqliteLiveness:
        return SqliteLiveness(self, record)

    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        return self.lock_file.free(keys)

    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> Listening | None:
        """SQLite has no notifications: waiters poll for other processes' writes."""
        return None

    def hold_connection(self) -> AbstractContextManager[None]:
        """Nothing to hold: every thread shares the one connection."""
        return nullcontext()

    def released(self) -> AbstractContextManager[None]:
        """Nothing to release."""
        return nullcontext()

    def _close_connections(self) -> None:
        with self._lock:
            self._conn.close()
        self.lock_file.close()


class ChainRunner:
    """Runs `Chain`s on one SQLite connection inside a transaction already open: the parts in
    order, each part's rows kept in a temp table for the parts after it.

    Args:
        conn: A ``sqlite3`` connection, or a DB-API adapter of one (a caller's connection).
        notify: Called with each statement's text (`Database.statement_listener`).
    """

    def __init__(self, conn: Any, notify: Callable[[str], None]) -> None:
        self._conn = conn
        self._notify = notify
        self._temp_tables: dict[str, int] = {}  # temp table -> rows it holds now

    def run(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        """The final query's result, once every part has run. Whoever rolls back the
        transaction (or savepoint) around a run, for whatever reason, calls `forget`."""
        for part in chain.parts:
            sql = _chain_sql(chain, part.name, part.sql)
            cursor = self._execute(sql, params.get(part.name, ()))
            rows = cursor.fetchall()
            if part.name in chain.read:
                self._keep(_temp_table(chain, part.name), cursor.description, rows)
        final = _chain_sql(chain, "final", chain.final)
        cursor = self._execute(final, params.get("final", ()))
        rows = cursor.fetchall()
        return Result(rows, cursor.rowcount if cursor.rowcount >= 0 else len(rows))

    def forget(self) -> None:
        """After a rollback: the temp tables hold what they held before it, or no longer
        exist. Either way their contents are unknown now."""
        self._temp_tables.clear()

    def _execute(self, sql: str, params: Params) -> Any:
        self._notify(sql)
        cursor = self._conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def _keep(self, table: str, description: Any, rows: list[tuple[object, ...]]) -> None:
        """Hold a part's rows in its temp table for the later parts (most hold none: a part
        that changed nothing, like a fence that held, costs no statement here)."""
        held = self._temp_tables.get(table)
        cursor = self._conn.cursor()
        if held is None:  # first use, or after a rollback: its contents are unknown
            columns = ", ".join(d[0] for d in description or ())
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns})")
        if held is None or held:
            cursor.execute(f"DELETE FROM {table}")
        if rows:
            marks = ", ".join("?" for _ in rows[0])
            cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        self._temp_tables[table] = len(rows)


def _chain_sql(chain: Chain, name: str, sql: str) -> str:
    key = f"chain:{chain.name}:{name}"
    rendered = DIALECT.rendered.get(key)
    if rendered is None:
        rendered = DIALECT.rendered[key] = DIALECT.render(_with_parts(sql, chain))
    return rendered


def _temp_table(chain: Chain, part: str) -> str:
    return f"temp.perdure_{chain.name}_{part}"


def _with_parts(sql: str, chain: Chain) -> str:
    for name in chain.part_names:
        sql = sql.replace("{@" + name + "}", _temp_table(chain, name))
    return sql


class LockFile:
    """The file next to a SQLite database where live processes hold one byte each.

    POSIX record locks belong to the process and the kernel drops them when it dies, which is
    how other processes on the host see a crash at once. One descriptor per process and file:
    closing any descriptor of the file would drop every lock the process holds on it.
    """

    def __init__(self, database_path: str) -> None:
        self.path = f"{database_path}-perdure.lock"
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fd

    def take(self, key: int) -> bool:
        """Hold byte ``key``; False if another process holds it."""
        if fcntl is None:
            return False
        with self._lock:
            try:
                fcntl.lockf(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, key)
            except OSError:
                return False
            return True

    def release(self, key: int) -> None:
        """Stop holding byte ``key``."""
        if fcntl is not None and self._fd is not None:
            with self._lock:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, key)

    def free(self, keys: tuple[int, ...]) -> set[int]:
        """Which of ``keys`` (other processes') nobody holds."""
        free = set()
        for key in keys:
            if self.take(key):  # only a probe: give it back at once
                self.release(key)
                free.add(key)
        return free

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SqliteLiveness:
    """This process's byte of the lock file, and heartbeats over a connection of its own."""

    def __init__(self, database: SqliteDatabase, record: ExecutorRecord) -> None:
        self._database = database
        self._record = record
        self._conn: sqlite3.Connection | None = None
        self._held = False
        self._beat_sql = DIALECT.render(executors.BEAT)

    def beat(self) -> bool:
        key = self._record.lock_key
        if not self._held and key is not None:
            self._held = self._database.lock_file.take(key)
        try:
            if self._conn is None:
                self._conn = connect(self._database.path)
            self._conn.execute(self._beat_sql, executors.beat_params(self._record))
        except sqlite3.Error:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            raise
        return self._held

    def update(self, record: ExecutorRecord) -> None:
        self._record = record

    def close(self) -> None:
        if self._held and self._record.lock_key is not None:
            self._database.lock_file.release(self._record.lock_key)
            self._held = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
