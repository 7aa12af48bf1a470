"""What the probes share: a fresh PostgreSQL database or SQLite file to run on."""

from __future__ import annotations

import os
import tempfile

import psycopg

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "perdure_probe"


def fresh_database(url: str | None) -> str:
    """``url`` if given (``sqlite`` for a new SQLite file), else a recreated PostgreSQL database."""
    if url == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp()}/probe.sqlite"
    if url:
        return url
    server = os.environ.get("BENCH_PG_URL", DEFAULT_SERVER)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return server.rsplit("/", 1)[0] + "/" + DATABASE
