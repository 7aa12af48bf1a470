"""``@DBOS.transaction``: user SQL and its checkpoint committed in one database transaction."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from perdure.clock import now_ms
from perdure.error import (
    DBOSInitializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from perdure.execution.context import (
    StepContext,
    current_workflow,
    reset_sql_session,
    reset_step,
    set_sql_session,
    set_step,
)
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.interface import STEP_COLUMNS, WorkflowStatusString

logger = get_logger(__name__)

ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")
# PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected.
_RETRYABLE_SQLSTATES = ("40001", "40P01")
MAX_SERIALIZATION_RETRIES = 50


class _Unrecorded(Exception):
    """The checkpoint insert found the workflow not PENDING: roll back the user's writes."""


def _sqlalchemy_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class ApplicationDatabase:
    """SQLAlchemy engine for transactions; the checkpoint table lives in the same database."""

    def __init__(self, url: str, *, system_url: str, table_prefix: str) -> None:
        if url != system_url:
            raise DBOSInitializationError(
                "application_database_url differs from system_database_url; this version of "
                "Perdure runs @DBOS.transaction only on the system database (so the checkpoint "
                "commits with your writes). Remove application_database_url or set it equal to "
                "system_database_url."
            )
        self.is_sqlite = url.startswith("sqlite")
        self.engine = sa.create_engine(_sqlalchemy_url(url), pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            _begin_immediate(self.engine)
        columns = ", ".join(STEP_COLUMNS)
        params = ", ".join(f":{c}" for c in STEP_COLUMNS)
        self.checkpoint_sql = sa.text(
            f"INSERT INTO {table_prefix}operation_outputs ({columns}) SELECT {params} "
            f"WHERE EXISTS (SELECT 1 FROM {table_prefix}workflow_status "
            "WHERE workflow_id = :workflow_id AND status = 'PENDING') "
            "ON CONFLICT (workflow_id, function_id) DO NOTHING"
        )

    @contextmanager
    def session(self, isolation_level: str) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        options = {} if self.is_sqlite else {"isolation_level": isolation_level}
        with (
            self.engine.connect().execution_options(**options) as conn,
            Session(bind=conn) as session,
            session.begin(),
        ):
            yield session

    def is_retryable(self, exc: sa.exc.DBAPIError) -> bool:
        """Serialization failures and deadlocks (Postgres), a busy database (SQLite)."""
        if self.is_sqlite:
            return "locked" in str(exc.orig) or "busy" in str(exc.orig)
        return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES

    def dispose(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()


def _begin_immediate(engine: sa.Engine) -> None:
    """Make SQLite transactions take the write lock at BEGIN (no lock-upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def run_transaction(
    engine: WorkflowEngine,
    app_db: ApplicationDatabase,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    isolation_level: str,
) -> Any:
    """Run ``func`` in a transaction; inside a workflow, checkpoint it in that transaction."""
    ctx = current_workflow()
    if ctx is None:
        return _attempts(app_db, isolation_level, lambda _s: func(*args, **kwargs))
    position = ctx.take_position()
    ctx.check_live()
    recorded = engine.replayed_step(ctx, position, name)
    if recorded is not None:
        return engine.replay_value(ctx, recorded)
    started = now_ms()

    def body(session: Session) -> Any:
        value = func(*args, **kwargs)
        step = engine.step_row(ctx, position, name, started, value=value)
        if session.execute(app_db.checkpoint_sql, step.__dict__).rowcount != 1:  # type: ignore[attr-defined]  # CursorResult
            raise _Unrecorded
        return value

    token = set_step(StepContext(position, 1, None))
    try:
        return _attempts(app_db, isolation_level, body)
    except _Unrecorded:
        # Rolled back with the user's writes; find out why: cancelled, or another execution.
        row = engine.store.get_workflow(ctx.workflow_id)
        if row is not None and row.status == WorkflowStatusString.CANCELLED:
            ctx.cancelled.set()
            raise DBOSWorkflowCancelledError(ctx.workflow_id) from None
        raise DBOSWorkflowConflictIDError(ctx.workflow_id) from None
    except Exception as exc:
        engine.record_step(ctx, engine.step_row(ctx, position, name, started, error=exc))
        raise
    finally:
        reset_step(token)


def _attempts(
    app_db: ApplicationDatabase, isolation_level: str, body: Callable[[Session], Any]
) -> Any:
    """Run ``body`` in a fresh transaction, retrying serialization failures with jitter."""
    for attempt in range(1, MAX_SERIALIZATION_RETRIES + 1):
        try:
            with app_db.session(isolation_level) as session:
                token = set_sql_session(session)
                try:
                    return body(session)
                finally:
                    reset_sql_session(token)
        except sa.exc.DBAPIError as exc:
            if not app_db.is_retryable(exc) or attempt == MAX_SERIALIZATION_RETRIES:
                raise
            logger.debug("Transaction conflict (%s); retrying, attempt %d", exc.orig, attempt)
            time.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable: the last attempt returns or raises")
