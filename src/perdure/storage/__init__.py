"""System-database storage: one contract (`Store`), a SQLite and a PostgreSQL backend."""

from __future__ import annotations

from perdure.storage.store import Store
from perdure.storage.urls import redact_url

__all__ = ["Store", "is_connection_failure", "migrate_system_database", "open_store", "redact_url"]

# How long `open_store` waits for a PostgreSQL server that is down or starting, by default.
DEFAULT_CONNECT_WAIT_SEC = 60.0


def open_store(
    url: str,
    *,
    max_connections: int = 16,
    create: bool = True,
    wait_limit_sec: float | None = None,
    connect_wait_sec: float = DEFAULT_CONNECT_WAIT_SEC,
) -> Store:
    """Open the system store for ``url`` (``sqlite:///...`` or ``postgresql://...``).

    Args:
        max_connections: The PostgreSQL pool's size.
        create: Create a missing PostgreSQL database (clients and the CLI never do).
        wait_limit_sec: How long each call keeps retrying while the database is unreachable;
            None (a launched process): for as long as it takes.
        connect_wait_sec: How long opening waits for a server that is down or starting.
    """
    # Backends import lazily: an SQLite-only application never loads the PostgreSQL driver.
    from perdure.storage.sql_store import SqlStore  # noqa: PLC0415

    if url.startswith("sqlite:///"):
        from perdure.storage.sqlite.database import SqliteDatabase  # noqa: PLC0415

        return SqlStore(SqliteDatabase(url, wait_limit_sec=wait_limit_sec))
    from perdure.storage.postgres.database import PostgresDatabase  # noqa: PLC0415

    database = PostgresDatabase(
        url,
        max_connections=max_connections,
        create=create,
        wait_limit_sec=wait_limit_sec,
        connect_wait_sec=connect_wait_sec,
    )
    return SqlStore(database)


def migrate_system_database(url: str, *, application_role: str | None = None) -> None:
    """Create or upgrade the schema of ``url`` (as the role that owns it); with
    ``application_role`` (PostgreSQL), grant that role what running workflows needs.

    Raises:
        DBOSInitializationError: The database cannot be reached or migrated, or a role is
            given for SQLite (which has no roles).
        psycopg.Error: The grant failed (e.g. no such role).
    """
    from perdure.error import DBOSInitializationError  # noqa: PLC0415 - lazy, as the backends

    if application_role is not None and url.startswith("sqlite:"):
        raise DBOSInitializationError(
            "An application role is for PostgreSQL system databases: SQLite has no roles."
        )
    store = open_store(url, max_connections=2, wait_limit_sec=10.0, connect_wait_sec=0.0)
    try:
        store.migrate()
    finally:
        store.close()
    if application_role is not None:
        from perdure.storage.postgres.roles import grant_app_role  # noqa: PLC0415

        grant_app_role(url, application_role)


def is_connection_failure(exc: BaseException) -> bool:
    """Whether a driver error (``sqlite3`` or psycopg) means the database is away for now
    (unreachable, restarting, failing over, busy): what is worth waiting out, not recording."""
    from perdure.storage.database import ErrorKind  # noqa: PLC0415 - lazy, as the backends
    from perdure.storage.sqlite.database import classify_error as sqlite_kind  # noqa: PLC0415

    kind = sqlite_kind(exc)
    if kind is None and type(exc).__module__.startswith("psycopg"):
        from perdure.storage.postgres.connect import classify_error  # noqa: PLC0415

        kind = classify_error(exc)
    return kind is ErrorKind.CONNECTION
