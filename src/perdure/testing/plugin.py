"""The pytest plugin: a freshly launched Perdure app per test, and a virtual clock on request.

Loaded by the ``pytest11`` entry point once Perdure is installed; it only adds fixtures (all
named ``perdure_*``) and one option, so nothing runs unless a test asks for a fixture.

- ``perdure_app``: ``DBOS`` configured from ``perdure_config`` and launched, destroyed after
  the test (the registry of decorated functions is kept: they are registered once, at import).
- ``perdure_clock``: a `VirtualClock` installed for the test (before the app launches, when a
  test asks for both).
- ``perdure_config``: the app's configuration; override it in a ``conftest.py`` to add keys.
- ``perdure_database_url``: a fresh system database: a SQLite file in the test's temporary
  folder, or a new PostgreSQL database (dropped after the test) on the server of
  ``--perdure-database-url`` / ``PERDURE_TESTING_DATABASE_URL``, whose user may create
  databases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

# Perdure itself is imported by the fixtures, not here: pytest imports plugins at start-up,
# before coverage measurement and assertion rewriting begin, and in every session.
if TYPE_CHECKING:
    from perdure.config import DBOSConfig
    from perdure.dbos import DBOS
    from perdure.testing.clock import VirtualClock

DATABASE_URL_OPTION = "--perdure-database-url"
DATABASE_URL_ENV = "PERDURE_TESTING_DATABASE_URL"
LAUNCH_TIMEOUT_SEC = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--perdure-database-url``."""
    group = parser.getgroup("perdure", "Perdure durable workflows")
    group.addoption(
        DATABASE_URL_OPTION,
        default=None,
        help="A PostgreSQL URL: the perdure_app fixture then gives each test a new database on "
        f"that server (default: ${DATABASE_URL_ENV}, else a SQLite file per test).",
    )


@pytest.fixture
def perdure_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty system database for one test: its URL."""
    server = request.config.getoption(DATABASE_URL_OPTION) or os.environ.get(DATABASE_URL_ENV)
    if not server:
        yield f"sqlite:///{tmp_path / 'perdure.sqlite'}"
        return
    if not server.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise pytest.UsageError(
            f"{DATABASE_URL_OPTION} must be a PostgreSQL URL (postgresql://user@host/db), got "
            f"{server!r}; leave it out to test on SQLite."
        )
    with _fresh_postgres_database(server) as url:
        yield url


@pytest.fixture
def perdure_config(perdure_database_url: str) -> DBOSConfig:
    """The configuration ``perdure_app`` launches with: override it to add keys."""
    return {"name": "perdure-test", "system_database_url": perdure_database_url}


@pytest.fixture
def perdure_clock() -> Iterator[VirtualClock]:
    """A `VirtualClock` governing workflow time during the test."""
    from perdure.testing.clock import VirtualClock  # noqa: PLC0415 - see the imports

    with VirtualClock() as clock:
        yield clock


@pytest.fixture
def perdure_app(request: pytest.FixtureRequest, perdure_config: DBOSConfig) -> Iterator[type[DBOS]]:
    """``DBOS`` configured from ``perdure_config`` and launched; destroyed after the test.

    An instance configured earlier (say, by ``DBOS(config=...)`` in the application's module)
    is destroyed first: the test's app runs on the test's database. Decorated functions stay
    registered.
    """
    from perdure.dbos import DBOS  # noqa: PLC0415 - see the imports

    if "perdure_clock" in request.fixturenames:
        request.getfixturevalue("perdure_clock")  # installed before launch: schedules follow it
    DBOS.destroy()
    DBOS(config=perdure_config)
    DBOS.launch()
    try:
        _wait_for_schedules(DBOS)
        yield DBOS
    finally:
        DBOS.destroy()


def _wait_for_schedules(dbos: type[DBOS]) -> None:
    """Until the schedule loop has seen the declared schedules: a clock advanced before that
    would have it count their first ticks from the new time."""
    runtime = dbos._runtime  # the facade's pointer to the instance just launched
    scheduler = runtime.scheduler if runtime is not None else None
    if scheduler is not None and not scheduler.first_pass_done.wait(LAUNCH_TIMEOUT_SEC):
        raise TimeoutError(f"Perdure's schedule loop did not start in {LAUNCH_TIMEOUT_SEC}s")


@contextmanager
def _fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url``; dropped (connections too) afterwards."""
    import psycopg  # noqa: PLC0415 - see the imports
    from psycopg import sql  # noqa: PLC0415

    from perdure.storage.postgres.connect import psycopg_conninfo  # noqa: PLC0415

    name = f"perdure_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg_conninfo(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
