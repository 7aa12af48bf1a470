"""``@DBOS.transaction``: user SQL and its checkpoint committed in one database transaction."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from perdure.clock import now_ms
from perdure.error import DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import (
    StepContext,
    WorkflowContext,
    current_workflow,
    reset_sql_session,
    reset_step,
    set_sql_session,
    set_step,
)
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.interface import StepRow, WorkflowStatusString

logger = get_logger(__name__)

ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")
MAX_SERIALIZATION_RETRIES = 50


class _Unrecorded(Exception):
    """The checkpoint insert wrote nothing: roll back the user's writes."""


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
    recorded = engine.replayed_step(ctx, position, name) or _committed_elsewhere(
        engine, app_db, ctx, position, name
    )
    if recorded is not None:
        return engine.replay_value(ctx, recorded)
    started = now_ms()
    written: list[StepRow] = []

    def body(session: Session) -> Any:
        value = func(*args, **kwargs)
        step = engine.step_row(ctx, position, name, started, value=value)
        params = {k: getattr(step, k) for k in StepRow.__dataclass_fields__}
        result = session.execute(app_db.checkpoint_sql, params)
        if result.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult for INSERT
            raise _Unrecorded
        written[:] = [step]
        return value

    token = set_step(StepContext(position, 1, None))
    try:
        with engine.step_span(ctx, name, position):
            value = _attempts(app_db, isolation_level, body)
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
    if not app_db.is_system_database:
        engine.record_step(ctx, written[0])  # copy the committed checkpoint to the system
    return value


def _committed_elsewhere(
    engine: WorkflowEngine,
    app_db: ApplicationDatabase,
    ctx: WorkflowContext,
    position: int,
    name: str,
) -> StepRow | None:
    """A checkpoint committed in a separate application database before a crash."""
    if not ctx.resumed or app_db.is_system_database:
        return None  # a first execution has nothing to find: no read on the hot path
    step = app_db.committed_checkpoint(ctx.workflow_id, position)
    if step is None:
        return None
    engine.record_step(ctx, step)
    return engine.replayed_step(ctx, position, name) or step


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
