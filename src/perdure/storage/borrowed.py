"""Perdure's statements on a connection its caller owns, inside the caller's open transaction.

`DBOSClient.enqueue_in_transaction` and the sends of the same kind write Perdure's rows through
a DB-API connection the application holds (under a SQLAlchemy ``Connection`` or ``Session``),
so that they commit or roll back with the application's own writes. A `BorrowedDatabase` runs
the store's usual statements there, and differs from a backend's own `Database` in three ways:

- It never commits, rolls back or retries: a retry inside someone else's transaction could
  not tell what the first attempt left. It begins only what the driver would have begun at
  the first write (SQLite's module begins transactions lazily).
- Each statement, and each `Database.transaction`, runs under a savepoint: a statement the
  database refuses (a taken deduplication ID) undoes only itself, and the caller's
  transaction stays usable (on PostgreSQL any error would otherwise abort it).
- It must be on the same system database as the store that borrows it (`identity`).

PostgreSQL's notifications are sent by triggers, so a NOTIFY raised here is delivered when the
caller commits, and never if it rolls back. SQLite has no notifications: waiters poll, and see
the rows once they are committed.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NoReturn, TypeVar

from perdure.error import DBOSException, DBOSSystemDatabaseError
from perdure.storage.database import (
    Chain,
    Database,
    ErrorKind,
    Params,
    Result,
    Tx,
)
from perdure.storage.postgres import connect as postgres_connect
from perdure.storage.postgres.database import DIALECT as POSTGRES_DIALECT
from perdure.storage.postgres.database import chain_statement
from perdure.storage.records import ExecutorRecord
from perdure.storage.sqlite import database as sqlite_database
from perdure.storage.store import Listening, Liveness, NoteHandler
from perdure.storage.urls import redact_url

T = TypeVar("T")

SAVEPOINT = "SAVEPOINT perdure_borrowed"
RELEASE_SAVEPOINT = "RELEASE SAVEPOINT perdure_borrowed"
ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT perdure_borrowed"
# What names a PostgreSQL system database: a digest of the random key migration 0010 created
# in it (never the key itself, which signs notifications).
NOTIFICATION_KEY_DIGEST = "SELECT encode(sha256(key), 'hex') FROM {p}notification_key"
UNDEFINED_TABLE = "42P01"
# What names a SQLite system database: its file (the ``main`` row of this pragma).
DATABASE_FILES = "PRAGMA database_list"
SQLITE_BEGIN = "BEGIN IMMEDIATE"  # the write lock up front: no failed upgrade later


class _BorrowedTx(Tx):
    def __init__(self, database: BorrowedDatabase, attempt: int) -> None:
        self._database = database
        self.attempt = attempt

    def run(self, sql: str, params: Params = ()) -> Result:
        return self._database._statement(self._database.dialect.render(sql), params)


class BorrowedDatabase(Database):
    """The store's statements on a caller's DB-API connection (see the module docstring).

    Args:
        connection: A DB-API connection (or SQLAlchemy's adapter of an async driver's) on
            the system database, outside autocommit mode.
        url: The system database's URL, for messages.
    """

    def __init__(self, connection: Any, *, url: str) -> None:
        super().__init__(wait_limit_sec=0.0)
        self.url = url
        self._conn = connection

    # -- what a backend supplies ---------------------------------------------------------------

    def _begin(self) -> None:
        """Open the caller's transaction at the driver if it is not open yet."""

    def _statement(self, sql: str, params: Params) -> Result:
        """One rendered statement on the caller's connection, as it stands."""
        self._notify_statement(sql)
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return Result(rows, cursor.rowcount if cursor.rowcount >= 0 else len(rows))
        finally:
            cursor.close()

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._begin()
        self._statement(SAVEPOINT, ())
        try:
            yield
        except BaseException:
            self._statement(ROLLBACK_TO_SAVEPOINT, ())
            self._statement(RELEASE_SAVEPOINT, ())
            raise
        self._statement(RELEASE_SAVEPOINT, ())

    def _execute(self, sql: str, params: Params) -> Result:
        with self._savepoint():
            return self._statement(sql, params)

    def _transact(self, work: Callable[[Tx], T], attempt: int) -> T:
        with self._savepoint():
            return work(_BorrowedTx(self, attempt))

    def _retrying(self, attempt: Callable[[int], T]) -> T:
        """One attempt: the caller's transaction is not ours to retry. A driver error is
        raised as Perdure's, after its savepoint has undone what it began."""
        try:
            return attempt(1)
        except Exception as exc:
            kind = self.classify(exc)
            if kind is None:
                raise
            if kind is ErrorKind.UNIQUE:
                raise self._translate(exc, kind) from exc  # store code expects UniqueViolation
            raise self._refused(exc) from exc

    def _refused(self, exc: BaseException) -> DBOSSystemDatabaseError:
        sqlstate = getattr(exc, "sqlstate", None)
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DBOSSystemDatabaseError(
            f"The system database refused a statement inside the caller's transaction{code}: "
            f"{first}. Its savepoint undid it; the transaction is yours to roll back or go "
            "on with.",
            sqlstate,
        )

    @abc.abstractmethod
    def identity(self) -> str | None:
        """What names the system database this connection is on (see `identity`)."""

    # -- what a caller's connection cannot do --------------------------------------------------

    def _close_connections(self) -> None:
        """Nothing to close: the connection is the caller's."""

    def migrate(self) -> None:
        _not_on_borrowed("Migrating the schema")

    def reset(self) -> None:
        _not_on_borrowed("Resetting the schema")

    def schema_version(self) -> int | None:
        _not_on_borrowed("Reading the schema version")

    def open_liveness(self, record: ExecutorRecord) -> Liveness:
        _not_on_borrowed("A process's liveness")

    def free_lock_keys(self, keys: tuple[int, ...]) -> set[int]:
        _not_on_borrowed("Probing other processes' locks")

    def listen(self, on_note: NoteHandler, on_gap: Callable[[], None]) -> Listening | None:
        """No notifications are read on a caller's connection."""
        return None

    def hold_connection(self) -> AbstractContextManager[None]:
        """Nothing to hold: there is one connection, the caller's."""
        return nullcontext()

    def released(self) -> AbstractContextManager[None]:
        """Nothing to release."""
        return nullcontext()


class BorrowedPostgres(BorrowedDatabase):
    """A caller's psycopg connection (psycopg begins its transaction at the first statement)."""

    dialect = POSTGRES_DIALECT

    def __init__(self, connection: Any, *, url: str) -> None:
        if getattr(connection, "autocommit", False):
            raise DBOSException(
                "The connection is in autocommit mode, so Perdure's rows would be committed at "
                "once, whatever the transaction around them does. Pass a connection inside a "
                "transaction (engine.begin(), or a Session)."
            )
        super().__init__(connection, url=url)

    def classify(self, exc: BaseException) -> ErrorKind | None:
        return postgres_connect.classify_error(exc)

    def _run_chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        statement, flat = chain_statement(self.dialect, chain, params)
        return self._execute(statement, flat)

    def identity(self) -> str | None:
        try:
            return _key_digest(self)
        except DBOSSystemDatabaseError as exc:
            if exc.sqlstate == UNDEFINED_TABLE:
                return None  # no Perdure tables here (the savepoint undid the failed read)
            raise


class BorrowedSqlite(BorrowedDatabase):
    """A caller's ``sqlite3`` connection (or SQLAlchemy's adapter of an aiosqlite one).

    Args:
        in_transaction: Whether the driver has begun a transaction (``sqlite3`` begins one
            lazily, before the first write).
    """

    dialect = sqlite_database.DIALECT

    def __init__(self, connection: Any, *, url: str, in_transaction: Callable[[], bool]) -> None:
        if connection.isolation_level is None or getattr(connection, "autocommit", None) is True:
            raise DBOSException(
                "The SQLite connection is in autocommit mode (isolation_level=None), so "
                "Perdure's rows would be committed at once, whatever the transaction around "
                "them does. Pass a connection of an engine with SQLite's default isolation."
            )
        super().__init__(connection, url=url)
        self._in_transaction = in_transaction
        self._chains = sqlite_database.ChainRunner(connection, self._notify_statement)

    def classify(self, exc: BaseException) -> ErrorKind | None:
        return sqlite_database.classify_error(exc)

    def _begin(self) -> None:
        # A savepoint outside a transaction would start one, and releasing it would commit.
        if not self._in_transaction():
            self._statement(SQLITE_BEGIN, ())

    def _run_chain(self, chain: Chain, params: Mapping[str, Params]) -> Result:
        # The caller may have rolled back since the last chain (or a savepoint may have been):
        # what the temp tables on its connection hold is unknown at each chain.
        self._chains.forget()
        with self._savepoint():
            return self._chains.run(chain, params)

    def identity(self) -> str | None:
        return _sqlite_file(self)


def identity(database: Database) -> str | None:
    """What names the system database ``database`` is on: on PostgreSQL a digest of its
    notification key (None: no Perdure tables), on SQLite its file's real path."""
    if isinstance(database, BorrowedDatabase):
        return database.identity()
    if database.dialect.name == "postgres":
        return _key_digest(database)
    return _sqlite_file(database)


def _key_digest(database: Database) -> str | None:
    rows = database.run(NOTIFICATION_KEY_DIGEST).rows
    return str(rows[0][0]) if rows else None


def _sqlite_file(database: Database) -> str | None:
    for _seq, name, path in database.run(DATABASE_FILES).rows:
        if name == "main" and path:
            return os.path.realpath(str(path))
    return None  # an in-memory or temporary database


def borrow(
    database: Database,
    connection: Any,
    *,
    in_transaction: Callable[[], bool],
    expected_identity: str | None,
) -> BorrowedDatabase:
    """``database``'s statements on a caller's ``connection`` to the same system database.

    Args:
        database: The store's own database.
        connection: The caller's DB-API connection, inside its transaction.
        in_transaction: Whether the driver has begun that transaction (read on SQLite).
        expected_identity: ``identity(database)``, if known already.

    Raises:
        DBOSException: The connection is in autocommit mode, or on another database (or one
            without Perdure's tables).
    """
    borrowed: BorrowedDatabase
    if database.dialect.name == "postgres":
        borrowed = BorrowedPostgres(connection, url=database.url)
    else:
        borrowed = BorrowedSqlite(connection, url=database.url, in_transaction=in_transaction)
    expected = expected_identity if expected_identity is not None else identity(database)
    found = borrowed.identity()
    if found is None or found != expected:
        what = "has no Perdure tables" if found is None else "is on another system database"
        raise DBOSException(
            f"The connection passed in {what}: it must be on the client's system database "
            f"{redact_url(database.url)}. Pass a Connection (or Session) of an engine on that "
            "database."
        )
    return borrowed


def _not_on_borrowed(what: str) -> NoReturn:
    raise DBOSException(
        f"{what} needs Perdure's own connections: a caller's connection only carries writes "
        "made inside the caller's transaction."
    )
