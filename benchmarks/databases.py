"""Fresh databases for each worker, and the database floor (one INSERT + COMMIT, native driver).

PostgreSQL: a new database per worker (``bench_<impl>_<n>``), dropped afterwards. SQLite: a new
file in a temporary folder, removed afterwards.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_counter = itertools.count(1)


def admin_url() -> str:
    """The maintenance database used to create and drop benchmark databases."""
    return os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL)


def _with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query string kept)."""
    base, _, query = url.partition("?")
    base = re.sub(r"/[^/]*$", f"/{name}", base)
    return f"{base}?{query}" if query else base


@contextmanager
def fresh_database(kind: str, label: str) -> Iterator[str]:
    """Yield the URL of a new, empty database for one worker; drop it afterwards."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"bench-{label}-")
        try:
            yield f"sqlite:///{folder}/bench.sqlite"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"bench_{label}_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(admin_url(), name)
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def server_version() -> str:
    """``SELECT version()`` of the PostgreSQL server, plus its durability settings."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()
        settings = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers') ORDER BY name"
        ).fetchall()
    described = ", ".join(f"{name}={value}" for name, value in settings)
    return f"{version[0] if version else '?'} ({described})"


def _timed_inserts_pg(url: str, warmup: int, count: int) -> list[float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_probe (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)")
        statement = "INSERT INTO floor_probe (payload) VALUES (%s)"
        samples: list[float] = []
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            conn.execute(statement, ("floor",), prepare=True)  # autocommit: INSERT + COMMIT
            elapsed = (time.perf_counter_ns() - start) / 1e6
            if i >= warmup:
                samples.append(elapsed)
    return samples


def _timed_inserts_sqlite(path: str, warmup: int, count: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE floor_probe (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)"
        )
        samples: list[float] = []
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO floor_probe (payload) VALUES (?)", ("floor",))
            conn.execute("COMMIT")
            elapsed = (time.perf_counter_ns() - start) / 1e6
            if i >= warmup:
                samples.append(elapsed)
        return samples
    finally:
        conn.close()


def measure_floor(kind: str, *, warmup: int = 200, count: int = 2000) -> list[float]:
    """Latencies (ms) of single-row INSERT + COMMIT on an empty table of a fresh database.

    PostgreSQL: psycopg 3, autocommit, prepared statement, same server as the workers.
    SQLite: ``sqlite3`` in WAL mode with ``synchronous=FULL``, in a temporary file.
    """
    with fresh_database(kind, "floor") as url:
        if kind == "sqlite":
            return _timed_inserts_sqlite(str(Path(url.removeprefix("sqlite:///"))), warmup, count)
        return _timed_inserts_pg(url, warmup, count)
