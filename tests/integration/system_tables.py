"""Test helpers that read or rewind Perdure's system tables directly, and relaunch Perdure.

Integration tests use them to look at what was stored (raw payloads, step rows) and to force a
replay in-process: a finished workflow is marked PENDING again, then a relaunch recovers it, so its
body re-executes against its recorded steps exactly as after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from perdure import DBOS
from tests.fixtures.app import make_config


def _engine(db_url: str) -> sa.Engine:
    if db_url.startswith("sqlite"):
        return sa.create_engine(db_url)
    return sa.create_engine("postgresql+psycopg://" + db_url.split("://", 1)[1])


def run_sql(db_url: str, statement: str, **params: Any) -> Sequence[sa.Row[Any]]:
    """Run one statement on the system database; ``{p}`` is the Perdure table prefix."""
    prefix = "" if db_url.startswith("sqlite") else "perdure."
    engine = _engine(db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement.replace("{p}", prefix)), params)
            return result.fetchall() if result.returns_rows else []
    finally:
        engine.dispose()


def workflow_row(db_url: str, workflow_id: str) -> sa.Row[Any]:
    """The raw ``workflow_status`` row of a workflow."""
    rows = run_sql(db_url, "SELECT * FROM {p}workflow_status WHERE workflow_id = :w", w=workflow_id)
    assert len(rows) == 1, f"expected one workflow_status row for {workflow_id!r}, got {rows}"
    return rows[0]


def step_rows(db_url: str, workflow_id: str) -> Sequence[sa.Row[Any]]:
    """The raw ``operation_outputs`` rows of a workflow, by position."""
    return run_sql(
        db_url,
        "SELECT * FROM {p}operation_outputs WHERE workflow_id = :w ORDER BY function_id",
        w=workflow_id,
    )


def mark_pending(db_url: str, workflow_id: str) -> None:
    """Make a finished workflow look interrupted, so the next launch recovers it."""
    run_sql(
        db_url,
        "UPDATE {p}workflow_status SET status = 'PENDING', output = NULL, error = NULL "
        "WHERE workflow_id = :w",
        w=workflow_id,
    )


def relaunch(db_url: str, **overrides: object) -> None:
    """Destroy the running instance (keeping registrations) and launch a new one on ``db_url``.

    The new launch recovers every PENDING workflow the previous launches of this executor owned.
    """
    DBOS.destroy()
    DBOS(config=make_config(db_url, **overrides))
    DBOS.launch()
