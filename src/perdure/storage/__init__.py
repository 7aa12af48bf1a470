"""System-database storage: one interface (`SystemStore`), a SQLite and a PostgreSQL backend."""

from __future__ import annotations

import re

from perdure.storage.interface import SystemStore


def redact_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_store(url: str, *, max_connections: int = 16, create: bool = True) -> SystemStore:
    """Open the system store for ``url`` (``sqlite:///...`` or ``postgresql://...``).

    ``create=False`` (clients, the CLI) never creates a missing Postgres database.
    """
    # Backends import lazily: an SQLite-only application never loads the PostgreSQL driver.
    if url.startswith("sqlite:///"):
        from perdure.storage.sqlite.store import SqliteStore  # noqa: PLC0415

        return SqliteStore(url)
    from perdure.storage.postgres.store import PostgresStore  # noqa: PLC0415

    return PostgresStore(url, max_connections=max_connections, create=create)
