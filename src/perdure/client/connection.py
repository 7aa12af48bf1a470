"""Opens an existing system database without migrating it, checking its schema version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from perdure.error import DBOSInitializationError
from perdure.storage import open_store, redact_url
from perdure.storage.interface import ManagementStore, SystemStore
from perdure.storage.migrations import load_migrations


@dataclass(frozen=True)
class OpenedStore:
    """One store seen through both of its interfaces."""

    system: SystemStore
    management: ManagementStore

    def close(self) -> None:
        """Release the store's connections."""
        self.system.close()


def backend_of(url: str) -> str:
    """The backend ("sqlite" or "postgres") a system database URL names."""
    return "sqlite" if url.startswith("sqlite:") else "postgres"


def open_existing_store(url: str, *, max_connections: int = 4) -> OpenedStore:
    """Open the system database at ``url``; never create or migrate its schema.

    Raises:
        DBOSInitializationError: The database is unreachable, has no Perdure schema, or has a
            schema newer than this version of Perdure understands.
    """
    shown = redact_url(url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise DBOSInitializationError(
                f"No system database at {shown}: the file does not exist. Launch the "
                "application once, or run `perdure migrate --db URL`, to create it."
            )
    system = open_store(url, max_connections=max_connections, create=False)
    # Both SQL backends implement the management queries next to the core ones.
    opened = OpenedStore(system, cast(ManagementStore, system))
    try:
        _check_schema(opened.management, url)
    except BaseException:
        opened.close()
        raise
    return opened


def _check_schema(store: ManagementStore, url: str) -> None:
    shown = redact_url(url)
    try:
        version = store.schema_version()
    except Exception as exc:
        raise DBOSInitializationError(
            f"Cannot read the schema version of the system database {shown}: {exc}"
        ) from exc
    if version is None:
        raise DBOSInitializationError(
            f"The system database {shown} has no Perdure schema. Launch the application once, "
            "or run `perdure migrate --db URL`, to create it."
        )
    migrations = load_migrations(backend_of(url))
    known = migrations[-1].version if migrations else 0
    if version > known:
        raise DBOSInitializationError(
            f"The system database {shown} has schema version {version}, newer than the "
            f"{known} this version of Perdure understands. Upgrade the perdure package."
        )
