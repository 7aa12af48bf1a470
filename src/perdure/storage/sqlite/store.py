"""SQLite system store: one WAL-mode connection per process, shared by threads under a lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TypeVar

from perdure.error import DBOSInitializationError
from perdure.storage.interface import mark_unavailable
from perdure.storage.migrations import created_tables, load_migrations, pending_migrations
from perdure.storage.sql_store import Params, Rows, SqlStore, Statements

T = TypeVar("T")

# How long a writer waits for another process holding the database lock.
BUSY_TIMEOUT_SEC = 30.0


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:///:memory:`` is refused)."""
    path = url.removeprefix("sqlite:///")
    if path in ("", ":memory:"):
        raise DBOSInitializationError(
            f"System database URL {url!r} has no file path; an in-memory database cannot survive "
            "a crash. Use sqlite:///path/to/app.sqlite."
        )
    return path


class _Statements(Statements):
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def run(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        return self._store._run(sql_text, params)


class SqliteStore(SqlStore):
    """`SystemStore` on a SQLite file, safe for many threads and several processes."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        path = sqlite_path(url)
        parent = Path(path).parent
        if not parent.is_dir():
            raise DBOSInitializationError(
                f"Cannot open the system database {url!r}: folder {str(parent)!r} does not "
                "exist. Create it or point system_database_url elsewhere."
            )
        try:
            # isolation_level=None: we issue BEGIN ourselves, so the driver never opens one.
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SEC, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a checkpoint survives power loss, not only a process crash.
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise DBOSInitializationError(
                f"Cannot open the SQLite system database {url!r}: {exc}. Check the path and "
                "its permissions."
            ) from exc
        self._lock = threading.Lock()
        self._statements = _Statements(self)

    def _run(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        self._notify_statement(sql_text)
        try:
            cursor = self._conn.execute(sql_text, params)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError) as exc:
            # Locked past the busy timeout, closed, disk trouble: the store is unusable now.
            mark_unavailable(exc)
            raise
        rows = cursor.fetchall()
        return rows, cursor.rowcount if cursor.rowcount >= 0 else len(rows)

    def _autocommit(self, sql_text: str, params: Params) -> tuple[Rows, int]:
        with self._lock:
            return self._run(sql_text, params)

    def _transaction(self, work: Callable[[Statements], T]) -> T:
        with self._lock:
            # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock later.
            self._run("BEGIN IMMEDIATE", ())
            try:
                result = work(self._statements)
            except BaseException:
                self._run("ROLLBACK", ())
                raise
            self._run("COMMIT", ())
            return result

    def migrate(self) -> None:
        def apply(tx: Statements) -> None:
            tx.run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)", ())
            rows, _ = tx.run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ())
            todo = pending_migrations(load_migrations("sqlite"), rows[0][0], url=self.url)
            for migration in todo:
                for statement in migration.statements:
                    tx.run(statement, ())
                tx.run("INSERT INTO schema_migrations (version) VALUES (?)", (migration.version,))

        self._transaction(apply)

    def hold_connection(self) -> AbstractContextManager[None]:
        """Nothing to hold: every thread shares the one connection."""
        return nullcontext()

    def reset(self) -> None:
        # Only Perdure's own tables: by default the application shares this file.
        tables = [*created_tables(load_migrations("sqlite")), "schema_migrations"]

        def drop(tx: Statements) -> None:
            for name in tables:
                tx.run(f'DROP TABLE IF EXISTS "{name}"', ())

        self._transaction(drop)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
