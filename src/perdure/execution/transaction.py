"""``@DBOS.transaction``: user SQL and its checkpoint committed in one database transaction."""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy.orm import Session

from perdure.clock import now_ms
from perdure.error import DBOSInitializationError
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
from perdure.execution.workflow import WorkflowEngine, is_system_failure
from perdure.logs import get_logger
from perdure.storage.records import StepRow

logger = get_logger(__name__)

ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")
MAX_SERIALIZATION_RETRIES = 50
# Backoff between attempts while the application database is unreachable (capped).
FIRST_OUTAGE_DELAY_SEC = 0.05
MAX_OUTAGE_DELAY_SEC = 2.0


class _Unrecorded(Exception):
    """The checkpoint insert wrote nothing: roll back the user's writes."""


def isolation(level: str) -> str:
    """``level`` as the database names it; raises for an unknown one."""
    upper = level.upper()
    if upper not in ISOLATION_LEVELS:
        raise DBOSInitializationError(
            f"Unknown isolation level {level!r}; use one of {', '.join(ISOLATION_LEVELS)}."
        )
    return upper


def transactional(
    func: Callable[..., Any],
    *,
    name: str | None,
    level: str,
    target: Callable[[], tuple[WorkflowEngine, ApplicationDatabase]],
    decorator: str,
) -> Callable[..., Any]:
    """``func`` run by `run_transaction` on the database ``target()`` gives at each call.

    Raises:
        DBOSInitializationError: ``func`` is async (sessions are synchronous); ``decorator``
            names the decorator in the message.
    """
    tx_name = name or func.__qualname__
    if inspect.iscoroutinefunction(func):
        raise DBOSInitializationError(
            f"{decorator} cannot decorate async function {tx_name!r}: SQLAlchemy sessions are "
            "synchronous. Make it a plain def (it can be called from async workflows), or use "
            "an async @DBOS.step() for async I/O."
        )

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        engine, database = target()
        return run_transaction(
            engine, database, func, args, kwargs, name=tx_name, isolation_level=level
        )

    return run


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
            written[:] = [step]
            raise _Unrecorded
        written[:] = [step]
        return value

    token = set_step(StepContext(position, 1, None))
    try:
        with engine.step_span(ctx, name, position):
            value = _attempts(app_db, isolation_level, body, waiting=engine.waiting)
    except _Unrecorded:
        # Rolled back with the user's writes. Either an earlier attempt committed (its
        # acknowledgement lost) or an earlier owner did, and that record stands; or the
        # workflow is no longer this execution's: the engine's checkpoint call tells which.
        return _standing_value(engine, app_db, ctx, written[0])
    except Exception as exc:
        if is_system_failure(exc):
            raise
        standing = engine.record_step(ctx, engine.step_row(ctx, position, name, started, error=exc))
        if standing is not None:
            return engine.replay_value(ctx, standing)
        raise
    finally:
        reset_step(token)
    if not app_db.is_system_database:
        standing = engine.record_step(ctx, written[0])  # copy the committed checkpoint
        if standing is not None:
            return engine.replay_value(ctx, standing)
    return value


def _standing_value(
    engine: WorkflowEngine, app_db: ApplicationDatabase, ctx: WorkflowContext, step: StepRow
) -> Any:
    """The committed outcome at ``step``'s position, after our checkpoint insert found it taken."""
    if not app_db.is_system_database:
        committed = app_db.committed_checkpoint(ctx.workflow_id, step.function_id)
        if committed is not None:
            step = committed
    standing = engine.record_step(ctx, step)  # raises if the workflow is no longer ours
    if standing is None:
        found = engine.store.load_steps(ctx.workflow_id, position=step.function_id)
        standing = found[0] if found else step
    return engine.replay_value(ctx, standing)


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
    standing = engine.record_step(ctx, step)
    return engine.replayed_step(ctx, position, name) or standing or step


def _attempts(
    app_db: ApplicationDatabase,
    isolation_level: str,
    body: Callable[[Session], Any],
    *,
    waiting: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> Any:
    """Run ``body`` in a fresh transaction, retrying serialization failures with jitter and
    waiting out an unreachable database for as long as it lasts.

    A failure of the database itself is never the transaction's outcome: the transaction did
    not commit (or, if its acknowledgement was lost, the checkpoint it committed is found by
    the next attempt), so it is simply tried again.
    """
    conflicts, delay = 0, FIRST_OUTAGE_DELAY_SEC
    while True:
        try:
            with app_db.session(isolation_level) as session:
                token = set_sql_session(session)
                try:
                    return body(session)
                finally:
                    reset_sql_session(token)
        except Exception as exc:
            if app_db.is_conflict(exc) and conflicts < MAX_SERIALIZATION_RETRIES:
                conflicts += 1
                logger.debug("Transaction conflict (%s); retrying, attempt %d", exc, conflicts)
                time.sleep(random.uniform(0, 0.002 * conflicts))  # noqa: S311 - jitter
                continue
            if not app_db.is_unavailable(exc):
                raise
            logger.warning("Application database unavailable (%s); retrying", exc)
            with waiting():
                time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - backoff jitter
            delay = min(delay * 2, MAX_OUTAGE_DELAY_SEC)
