"""Opens an existing system database without migrating it, checking its schema version."""

from __future__ import annotations

from pathlib import Path

from perdure.error import DBOSInitializationError
from perdure.storage import Store, open_store, redact_url
from perdure.storage.migrations import check_version

# How long a client's call keeps retrying while the system database is unreachable: a client
# serves a caller (a request handler, a script) that should hear of an outage, not hang.
CLIENT_WAIT_LIMIT_SEC = 60.0


def backend_of(url: str) -> str:
    """The backend ("sqlite" or "postgres") a system database URL names."""
    return "sqlite" if url.startswith("sqlite:") else "postgres"


def open_existing_store(
    url: str,
    *,
    max_connections: int = 4,
    wait_limit_sec: float = CLIENT_WAIT_LIMIT_SEC,
    connect_wait_sec: float | None = None,
) -> Store:
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
    store = open_store(
        url,
        max_connections=max_connections,
        create=False,
        wait_limit_sec=wait_limit_sec,
        connect_wait_sec=min(wait_limit_sec, 10.0)
        if connect_wait_sec is None
        else connect_wait_sec,
    )
    try:
        _check_schema(store, url)
    except BaseException:
        store.close()
        raise
    return store


def _check_schema(store: Store, url: str) -> None:
    shown = redact_url(url)
    try:
        version = store.schema_version()
    except Exception as exc:
        raise DBOSInitializationError(
            f"Cannot read the schema version of the system database {shown}: {exc}"
        ) from exc
    check_version(version, backend_of(url), url=shown, require_current=False)
