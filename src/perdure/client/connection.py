"""Opens an existing system database without migrating it, checking its schema version."""

from __future__ import annotations

from pathlib import Path

from perdure.config_compat import dbos2_system_database_url
from perdure.error import DBOSInitializationError
from perdure.logs import get_logger
from perdure.storage import Store, open_store, redact_url
from perdure.storage.migrations import check_version

logger = get_logger(__name__)

# How long a client's call keeps retrying while the system database is unreachable: a client
# serves a caller (a request handler, a script) that should hear of an outage, not hang.
CLIENT_WAIT_LIMIT_SEC = 60.0


class _NoSystemDatabase(DBOSInitializationError):
    """The URL names no database, or one without Perdure's schema: a DBOS 2.x URL may then
    name the application database, whose system database is beside it."""


def backend_of(url: str) -> str:
    """The backend ("sqlite" or "postgres") a system database URL names."""
    return "sqlite" if url.startswith("sqlite:") else "postgres"


def pick_url(
    database_url: str | None,
    *,
    system_database_url: str | None,
    application_database_url: str | None,
) -> tuple[str | None, bool]:
    """The URL `DBOSClient` opens first, and whether it is a DBOS 2.x application-database URL
    (see `open_client_store`); (None, False) if none is given.

    As in DBOS 2.31: ``system_database_url`` wins, else ``database_url``, else
    ``application_database_url``. A URL given but not used is named in one warning.
    """
    given = [
        (key, url)
        for key, url in (
            ("database_url", database_url),
            ("application_database_url", application_database_url),
        )
        if url is not None
    ]
    if system_database_url is not None:
        chosen, beside, unused = system_database_url, False, given
    elif given:
        (_, chosen), beside, unused = given[0], True, given[1:]
    else:
        return None, False
    if unused:
        logger.warning(
            "DBOSClient ignores %s: it needs only the system database (%s is used).",
            " and ".join(key for key, _ in unused),
            "system_database_url" if not beside else given[0][0],
        )
    return chosen, beside


def open_client_store(url: str, *, beside: bool, connect_wait_sec: float | None = None) -> Store:
    """Open the system database at ``url``, or, with ``beside``, where DBOS 2.x looks for it.

    A DBOS 2.x URL (``database_url``, ``application_database_url``) names the application
    database, whose system database is ``<name>_dbos_sys`` on the same server (on SQLite, the
    same file). Perdure's own clients pass the system database itself in the same position,
    so the URL is opened as given first, and the database beside it only if the URL's own
    database does not exist or has no Perdure schema.

    ``connect_wait_sec`` is `open_existing_store`'s.

    Raises:
        DBOSInitializationError: See `open_existing_store`; when both were tried, the message
            names both.
    """
    try:
        return open_existing_store(url, connect_wait_sec=connect_wait_sec)
    except _NoSystemDatabase as exc:
        other = dbos2_system_database_url(url) if beside else url
        if other == url:
            raise
        try:
            store = open_existing_store(other, connect_wait_sec=connect_wait_sec)
        except _NoSystemDatabase as second:
            raise DBOSInitializationError(
                f"{exc.detail} Nor is there one at {redact_url(other)}, where DBOS 2.x keeps "
                f"the system database of application database {redact_url(url)}: "
                f"{second.detail}"
            ) from exc
        logger.info(
            "DBOSClient: %s holds no Perdure system database; using %s beside it (DBOS "
            "2.x's database_url)",
            redact_url(url),
            redact_url(other),
        )
        return store


def open_existing_store(
    url: str,
    *,
    max_connections: int = 4,
    wait_limit_sec: float = CLIENT_WAIT_LIMIT_SEC,
    connect_wait_sec: float | None = None,
) -> Store:
    """Open the system database at ``url``; never create or migrate its schema.

    ``connect_wait_sec`` bounds the wait for a PostgreSQL server that is down or starting
    (None: ``wait_limit_sec``, at most 10 seconds; 0: fail at once).

    Raises:
        DBOSInitializationError: The database is unreachable, has no Perdure schema, or has a
            schema newer than this version of Perdure understands.
    """
    shown = redact_url(url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path not in ("", ":memory:") and not Path(path).is_file():
            raise _NoSystemDatabase(
                f"No system database at {shown}: the file does not exist. Launch the "
                "application once, or run `perdure migrate --db URL`, to create it."
            )
    try:
        store = open_store(
            url,
            max_connections=max_connections,
            create=False,
            wait_limit_sec=wait_limit_sec,
            connect_wait_sec=min(wait_limit_sec, 10.0)
            if connect_wait_sec is None
            else connect_wait_sec,
        )
    except DBOSInitializationError as exc:
        if _names_missing_database(exc.__cause__):
            raise _NoSystemDatabase(exc.detail) from exc
        raise
    try:
        _check_schema(store, url)
    except BaseException:
        store.close()
        raise
    return store


def check_connection(store: Store, url: str) -> None:
    """Reach the system database now: one new connection (PostgreSQL) or the file (SQLite),
    then the schema version through the store's own connections.

    Raises:
        DBOSInitializationError: Unreachable (at once, without waiting for it to come back),
            gone, or without its schema.
    """
    shown = redact_url(url)
    if backend_of(url) == "postgres":
        # Imported here, as the storage package does: SQLite-only processes skip psycopg.
        from perdure.storage.postgres.connect import wait_until_reachable  # noqa: PLC0415

        wait_until_reachable(url, create=False, wait_sec=0.0)
    elif not Path(url.removeprefix("sqlite:///")).is_file():
        raise DBOSInitializationError(
            f"The system database {shown} is gone: its file does not exist any more."
        )
    _check_schema(store, url)


def _names_missing_database(cause: BaseException | None) -> bool:
    if cause is None or not type(cause).__module__.startswith("psycopg"):
        return False
    from perdure.storage.postgres.connect import names_missing_database  # noqa: PLC0415

    return names_missing_database(cause)


def _check_schema(store: Store, url: str) -> None:
    shown = redact_url(url)
    try:
        version = store.schema_version()
    except Exception as exc:
        raise DBOSInitializationError(
            f"Cannot read the schema version of the system database {shown}: {exc}"
        ) from exc
    if version is None:
        raise _NoSystemDatabase(
            f"The system database {shown} has no Perdure schema. Launch the application "
            "once, or run `perdure --db URL migrate`, to create it."
        )
    check_version(version, backend_of(url), url=shown, require_current=False)
