"""Transactions (``@DBOS.transaction``, datasources): user SQL and its checkpoint committed in
one database transaction, synchronous or async."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
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
    is_async: bool = False,
) -> Callable[..., Any]:
    """``func`` run by `run_transaction` (or `run_transaction_async` when ``is_async``) on
    the database ``target()`` gives at each call.

    Raises:
        DBOSInitializationError: ``func`` is async where sessions are synchronous, or plain
            where they are async; ``decorator`` names the decorator in the message.
    """
    tx_name = name or func.__qualname__
    if inspect.iscoroutinefunction(func) != is_async:
        raise DBOSInitializationError(
            f"{decorator} cannot decorate {'plain' if is_async else 'async'} function "
            f"{tx_name!r}: "
            + (
                "an AsyncSQLAlchemyDatasource runs coroutine functions (async def) that use "
                "its AsyncSession. Make it async, or use a SQLAlchemyDatasource."
                if is_async
                else "SQLAlchemy sessions are synchronous. Make it a plain def (it can be "
                "called from async workflows), or use an AsyncSQLAlchemyDatasource."
            )
        )
    if is_async:

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            engine, database = target()
            return await run_transaction_async(
                engine, database, func, args, kwargs, name=tx_name, isolation_level=level
            )

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        engine, database = target()
        return run_transaction(
            engine, database, func, args, kwargs, name=tx_name, isolation_level=level
        )

    return run


class _Checkpointed:
    """One transaction of a workflow: its position, its replay, its checkpoint and outcome.

    The sync and async runners differ only in how they await the user's function and the
    database; what is recorded, replayed or refused is decided here, once. The outcome is
    encoded by the database's own serializer if it has one (a datasource's), else by the
    configured one.
    """

    def __init__(
        self, engine: WorkflowEngine, app_db: ApplicationDatabase, ctx: WorkflowContext, name: str
    ) -> None:
        self.engine, self.app_db, self.ctx, self.name = engine, app_db, ctx, name
        self.payloads = (
            engine.payloads
            if app_db.serializer is None
            else engine.payloads.writing_with(app_db.serializer)
        )
        self.position = ctx.take_position()
        ctx.check_live()
        self.recorded = engine.replayed_step(ctx, self.position, name)
        self.started = now_ms()
        self.written: StepRow | None = None

    @property
    def looks_elsewhere(self) -> bool:
        """Whether to look for a checkpoint committed in a separate application database
        before a crash: a resumed workflow not replaying this position from the system
        database (a first execution has nothing to find: no read on the hot path)."""
        return self.recorded is None and self.ctx.resumed and not self.app_db.is_system_database

    def adopt(self, step: StepRow | None) -> None:
        """Take a checkpoint found committed in the application database as the record."""
        if step is None:
            return
        standing = self.engine.record_step(self.ctx, step)
        self.recorded = (
            self.engine.replayed_step(self.ctx, self.position, self.name) or standing or step
        )

    def replay(self, step: StepRow) -> Any:
        """The recorded output of ``step``, or raise its recorded error."""
        workflow_id = self.ctx.workflow_id
        if step.error is not None:
            raise self.payloads.decode_error(
                step.error, step.serialization, workflow_id=workflow_id
            )
        if step.output is None:
            return None
        what = f"output of transaction {step.function_name!r}"
        return self.payloads.decode(
            step.output, step.serialization, what=what, workflow_id=workflow_id
        )

    def _step(self, *, value: Any = None, error: BaseException | None = None) -> StepRow:
        output = encoded_error = None
        workflow_id = self.ctx.workflow_id
        if error is not None:
            encoded_error = self.payloads.encode_error(error, workflow_id=workflow_id)
        elif value is not None:
            what = f"output of transaction {self.name!r}"
            output = self.payloads.encode(value, what=what, workflow_id=workflow_id)
        return self.engine.encoded_step(
            self.ctx,
            self.position,
            self.name,
            self.started,
            output=output,
            error=encoded_error,
            serialization=self.payloads.format,
        )

    def checkpoint(self, value: Any) -> tuple[Any, dict[str, Any]]:
        """The statement (and its parameters) that records ``value`` in the transaction."""
        step = self._step(value=value)
        self.written = step
        return self.app_db.checkpoint_sql, {
            k: getattr(step, k) for k in StepRow.__dataclass_fields__
        }

    @staticmethod
    def confirm(rowcount: int) -> None:
        """Roll back the user's writes when the checkpoint insert wrote nothing."""
        if rowcount != 1:
            raise _Unrecorded

    @contextmanager
    def running(self) -> Iterator[None]:
        """The step context and tracing span around the attempts."""
        token = set_step(StepContext(self.position, 1, None))
        try:
            with self.engine.step_span(self.ctx, self.name, self.position):
                yield
        finally:
            reset_step(token)

    def unrecorded(self, committed: StepRow | None) -> Any:
        """Rolled back with the user's writes. Either an earlier attempt committed (its
        acknowledgement lost) or an earlier owner did, and that record stands; or the
        workflow is no longer this execution's: the engine's checkpoint call tells which.

        ``committed`` is the checkpoint found in a separate application database, if any.
        """
        assert self.written is not None  # noqa: S101 - set before the insert that raised
        step = committed or self.written
        standing = self.engine.record_step(self.ctx, step)  # raises if no longer ours
        if standing is None:
            found = self.engine.store.load_steps(self.ctx.workflow_id, position=step.function_id)
            standing = found[0] if found else step
        return self.replay(standing)

    def failed(self, exc: Exception) -> Any:
        """Record the user's error as the outcome (or return a standing one); re-raise it."""
        if is_system_failure(exc):
            raise exc
        standing = self.engine.record_step(self.ctx, self._step(error=exc))
        if standing is not None:
            return self.replay(standing)
        raise exc

    def committed(self, value: Any) -> Any:
        """After commit: copy the checkpoint to the system database if it lives elsewhere."""
        if not self.app_db.is_system_database:
            assert self.written is not None  # noqa: S101 - written by the committed body
            standing = self.engine.record_step(self.ctx, self.written)
            if standing is not None:
                return self.replay(standing)
        return value


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
    tx = _Checkpointed(engine, app_db, ctx, name)
    if tx.looks_elsewhere:
        tx.adopt(app_db.committed_checkpoint(ctx.workflow_id, tx.position))
    if tx.recorded is not None:
        return tx.replay(tx.recorded)

    def body(session: Session) -> Any:
        value = func(*args, **kwargs)
        session.flush()  # the checkpoint holds generated keys and defaults, as the caller sees
        tx.confirm(session.execute(*tx.checkpoint(value)).rowcount)  # type: ignore[attr-defined]
        return value

    with tx.running():
        try:
            value = _attempts(app_db, isolation_level, body, waiting=engine.waiting)
        except _Unrecorded:
            return tx.unrecorded(app_db.committed_checkpoint(ctx.workflow_id, tx.position))
        except Exception as exc:  # noqa: BLE001 - recorded as the outcome, then re-raised
            return tx.failed(exc)
    return tx.committed(value)


async def run_transaction_async(
    engine: WorkflowEngine,
    app_db: ApplicationDatabase,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    isolation_level: str,
) -> Any:
    """`run_transaction` for a coroutine function on an `AsyncSession`."""
    ctx = current_workflow()
    if ctx is None:
        return await _attempts_async(app_db, isolation_level, lambda _s: func(*args, **kwargs))
    tx = _Checkpointed(engine, app_db, ctx, name)
    if tx.looks_elsewhere:
        tx.adopt(await app_db.committed_checkpoint_async(ctx.workflow_id, tx.position))
    if tx.recorded is not None:
        return tx.replay(tx.recorded)

    async def body(session: AsyncSession) -> Any:
        value = await func(*args, **kwargs)
        await session.flush()  # as in run_transaction
        tx.confirm((await session.execute(*tx.checkpoint(value))).rowcount)  # type: ignore[attr-defined]
        return value

    with tx.running():
        try:
            value = await _attempts_async(app_db, isolation_level, body)
        except _Unrecorded:
            found = await app_db.committed_checkpoint_async(ctx.workflow_id, tx.position)
            return tx.unrecorded(found)
        except Exception as exc:  # noqa: BLE001 - recorded as the outcome, then re-raised
            return tx.failed(exc)
    return tx.committed(value)


class _Retry:
    """When to try a transaction again: conflicts at once (with jitter), outages with a
    capped backoff for as long as they last; anything else is the transaction's outcome.

    A failure of the database itself is never the outcome: the transaction did not commit
    (or, if its acknowledgement was lost, the checkpoint it committed is found by the next
    attempt), so it is simply tried again.
    """

    def __init__(self, app_db: ApplicationDatabase) -> None:
        self.app_db = app_db
        self.conflicts = 0
        self.delay = FIRST_OUTAGE_DELAY_SEC

    def after(self, exc: Exception) -> tuple[float, bool]:
        """(seconds to wait, whether the database is away); re-raises ``exc`` if final."""
        if self.app_db.is_conflict(exc) and self.conflicts < MAX_SERIALIZATION_RETRIES:
            self.conflicts += 1
            logger.debug("Transaction conflict (%s); retrying, attempt %d", exc, self.conflicts)
            return random.uniform(0, 0.002 * self.conflicts), False  # noqa: S311 - jitter
        if not self.app_db.is_unavailable(exc):
            raise exc
        logger.warning("Application database unavailable (%s); retrying", exc)
        delay = self.delay * random.uniform(0.5, 1.0)  # noqa: S311 - backoff jitter
        self.delay = min(self.delay * 2, MAX_OUTAGE_DELAY_SEC)
        return delay, True


def _attempts(
    app_db: ApplicationDatabase,
    isolation_level: str,
    body: Callable[[Session], Any],
    *,
    waiting: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> Any:
    """Run ``body`` in a fresh transaction until it commits or fails for good (`_Retry`)."""
    retry = _Retry(app_db)
    while True:
        try:
            with app_db.session(isolation_level) as session:
                token = set_sql_session(session)
                try:
                    return body(session)
                finally:
                    reset_sql_session(token)
        except Exception as exc:  # noqa: BLE001 - _Retry re-raises what is final
            delay, away = retry.after(exc)
        with waiting() if away else nullcontext():
            time.sleep(delay)


async def _attempts_async(
    app_db: ApplicationDatabase,
    isolation_level: str,
    body: Callable[[AsyncSession], Awaitable[Any]],
) -> Any:
    """`_attempts` on the datasource's async engine."""
    retry = _Retry(app_db)
    while True:
        try:
            async with app_db.async_session(isolation_level) as session:
                token = set_sql_session(session)
                try:
                    return await body(session)
                finally:
                    reset_sql_session(token)
        except Exception as exc:  # noqa: BLE001 - _Retry re-raises what is final
            delay, _away = retry.after(exc)
        await asyncio.sleep(delay)
