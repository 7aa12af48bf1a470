"""Reaching a PostgreSQL server: connection options, what its errors mean, waiting for it."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import PoolClosed, PoolTimeout

from perdure.error import DBOSInitializationError
from perdure.storage.database import ErrorKind
from perdure.storage.urls import redact_url

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SEC = 5
# Detect a dead peer (a partition, a host gone) within seconds, not TCP's default hours:
# keepalives on idle connections, and a limit on unacknowledged data of busy ones.
CONNECTION_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}

# SQLSTATEs that mean "the server is away or not serving writes here right now": admin
# shutdown, crash shutdown, cannot connect now (starting up), too many connections, and a
# read-only transaction (a failover left this connection on a standby).
_TRANSIENT = frozenset({"57P01", "57P02", "57P03", "53300", "25006"})
_CONFLICT = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_UNIQUE = "23505"
# Messages of a server that refused a connection for a reason that waiting may fix.
_TRANSIENT_FATAL = ("starting up", "shutting down", "in recovery", "too many", "terminating")


def psycopg_conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def classify_error(exc: BaseException) -> ErrorKind | None:  # noqa: PLR0911 - a flat dispatch
    """What a psycopg error means (None: not psycopg's)."""
    if isinstance(exc, PoolTimeout):
        return ErrorKind.CONNECTION
    if isinstance(exc, PoolClosed):
        return ErrorKind.FATAL
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if state is None:
        # No SQLSTATE: the connection failed (refused, reset, closed under us).
        is_connection = isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        return ErrorKind.CONNECTION if is_connection else ErrorKind.FATAL
    if state.startswith("08") or state in _TRANSIENT:
        return ErrorKind.CONNECTION
    if state in _CONFLICT:
        return ErrorKind.CONFLICT
    if state == _UNIQUE:
        return ErrorKind.UNIQUE
    return ErrorKind.FATAL


def connection_refused_for_good(exc: psycopg.Error) -> bool:
    """Whether a failed connection attempt was refused by the server for a reason waiting
    cannot fix (a wrong password, role or database name), as opposed to a server that is
    down, starting, or unreachable for now."""
    text = str(exc)
    return "FATAL:" in text and not any(t in text for t in _TRANSIENT_FATAL)


def names_missing_database(exc: BaseException) -> bool:
    """Whether a failed connection attempt was refused because the database does not exist
    (libpq reports it without a SQLSTATE, so the server's message tells)."""
    text = str(exc)
    return (
        isinstance(exc, psycopg.OperationalError)
        and "database" in text
        and "does not exist" in text
    )


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


def wait_until_reachable(url: str, *, create: bool, wait_sec: float) -> None:
    """Connect once (creating a missing database if asked), waiting up to ``wait_sec`` for a
    server that is down or starting; a bad URL, user or password fails at once."""
    deadline = time.monotonic() + wait_sec
    delay, warned = 0.1, False
    while True:
        try:
            _connect_once(url, create=create)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if connection_refused_for_good(exc) or time.monotonic() >= deadline:
                raise DBOSInitializationError(
                    f"Cannot connect to the system database {redact_url(url)}: {reason}. Check "
                    "that PostgreSQL is running and that the URL's host, port, user, password "
                    "and database are right."
                ) from exc
            if not warned:
                logger.warning(
                    "Waiting up to %.0fs for the system database %s (%s)",
                    wait_sec,
                    redact_url(url),
                    reason,
                )
                warned = True
            # Back-off before the next connection attempt, never past the deadline.
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)
        else:
            if warned:
                logger.warning("System database %s is reachable", redact_url(url))
            return


def _connect_once(url: str, *, create: bool) -> None:
    try:
        psycopg.connect(psycopg_conninfo(url), connect_timeout=CONNECT_TIMEOUT_SEC).close()
    except psycopg.OperationalError as exc:
        if not create or not names_missing_database(exc):
            raise
        _create_database(url)
