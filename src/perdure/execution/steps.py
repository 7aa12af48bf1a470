"""Steps inside workflows: replay or run with retries, then checkpoint in one round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from perdure.clock import now_ms
from perdure.error import DBOSMaxStepRetriesExceeded, DBOSWorkflowCancelledError
from perdure.execution.context import (
    StepContext,
    WorkflowContext,
    current_workflow,
    reset_step,
    set_step,
)
from perdure.execution.workflow import WorkflowEngine, is_system_failure
from perdure.logs import get_logger

logger = get_logger(__name__)

SLEEP_STEP_NAME = "DBOS.sleep"


@dataclass(frozen=True)
class RetryPolicy:
    """How a step retries: ``max_attempts`` tries, waiting ``interval * backoff**n`` between."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0

    @property
    def attempts(self) -> int:
        return self.max_attempts if self.retries_allowed else 1

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(self.interval_seconds * self.backoff_rate ** (attempt - 1))


@dataclass
class _StepRun:
    ctx: WorkflowContext
    position: int
    name: str
    started_ms: int


def _begin(engine: WorkflowEngine, ctx: WorkflowContext, name: str) -> tuple[_StepRun, Any, bool]:
    """Take the next position; return (run, recorded value, whether it was recorded)."""
    position = ctx.take_position()
    ctx.check_live()
    recorded = engine.replayed_step(ctx, position, name)
    run = _StepRun(ctx, position, name, now_ms())
    if recorded is None:
        return run, None, False
    return run, engine.replay_value(ctx, recorded), True


def _record(engine: WorkflowEngine, run: _StepRun, *, value: Any = None) -> Any:
    """Checkpoint a step's output; the value the workflow goes on with (the record's)."""
    try:
        step = engine.step_row(run.ctx, run.position, run.name, run.started_ms, value=value)
    except Exception as exc:  # an output we cannot store becomes the step's recorded error
        _record_error(engine, run, exc)
        raise
    standing = engine.record_step(run.ctx, step)
    return value if standing is None else engine.replay_value(run.ctx, standing)


def _record_error(engine: WorkflowEngine, run: _StepRun, error: BaseException) -> None:
    """Checkpoint a step's final error (unless the record at its position says otherwise)."""
    step = engine.step_row(run.ctx, run.position, run.name, run.started_ms, error=error)
    standing = engine.record_step(run.ctx, step)
    if standing is not None:
        engine.replay_value(run.ctx, standing)  # raises the recorded error, if that is it


def _after_failure(
    engine: WorkflowEngine, run: _StepRun, policy: RetryPolicy, attempt: int, exc: Exception
) -> float:
    """After a failed attempt: the delay before the next one, or record the failure and raise.

    A failure of the system database (a Perdure call inside the step) is not the step's
    outcome: it is raised without a record, and the workflow is resumed later.
    """
    if is_system_failure(exc):
        raise exc
    if attempt < policy.attempts:
        delay = policy.delay_after(attempt)
        logger.warning(
            "Step %r attempt %d failed (%r); retrying in %.2fs", run.name, attempt, exc, delay
        )
        return delay
    error: Exception = exc
    if policy.retries_allowed:
        error = DBOSMaxStepRetriesExceeded(run.name, policy.attempts)
    _record_error(engine, run, error)
    if error is exc:
        raise exc
    raise error from exc


def run_step(
    engine: WorkflowEngine,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    policy: RetryPolicy,
) -> Any:
    """Call a sync step: a plain call outside workflows, durable inside one."""
    ctx = current_workflow()
    if ctx is None:
        return func(*args, **kwargs)
    run, recorded, was_recorded = _begin(engine, ctx, name)
    if was_recorded:
        return recorded
    with engine.step_span(ctx, name, run.position):
        for attempt in range(1, policy.attempts + 1):
            token = set_step(StepContext(run.position, attempt, policy.attempts))
            try:
                value = func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - _after_failure retries, or records, raises
                delay = _after_failure(engine, run, policy, attempt, exc)
            else:
                return _record(engine, run, value=value)
            finally:
                reset_step(token)
            with engine.waiting():
                cancelled = ctx.cancelled.wait(delay)
            if cancelled:
                ctx.check_live()
    raise AssertionError("unreachable: the last attempt returns or raises")


async def run_step_async(
    engine: WorkflowEngine,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    policy: RetryPolicy,
) -> Any:
    """Await an async step: a plain call outside workflows, durable inside one."""
    ctx = current_workflow()
    if ctx is None:
        return await func(*args, **kwargs)
    run, recorded, was_recorded = _begin(engine, ctx, name)
    if was_recorded:
        return recorded
    with engine.step_span(ctx, name, run.position):
        for attempt in range(1, policy.attempts + 1):
            token = set_step(StepContext(run.position, attempt, policy.attempts))
            try:
                value = await func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - _after_failure retries, or records, raises
                delay = _after_failure(engine, run, policy, attempt, exc)
            else:
                return _record(engine, run, value=value)
            finally:
                reset_step(token)
            await asyncio.sleep(delay)
            ctx.check_live()
    raise AssertionError("unreachable: the last attempt returns or raises")


def wake_time(engine: WorkflowEngine, ctx: WorkflowContext, seconds: float) -> int:
    """The recorded wake-up time, checkpointed before the first sleep begins."""
    run, recorded, was_recorded = _begin(engine, ctx, SLEEP_STEP_NAME)
    if was_recorded:
        return int(recorded)
    return int(_record(engine, run, value=run.started_ms + round(seconds * 1000)))


def _next_wait(ctx: WorkflowContext, wake_ms: int) -> float:
    """Seconds to wait now: until the wake-up time or the deadline, whichever is first."""
    ctx.check_live()
    until = wake_ms if ctx.deadline_epoch_ms is None else min(wake_ms, ctx.deadline_epoch_ms)
    return max(0.0, (until - now_ms()) / 1000)


def durable_sleep(engine: WorkflowEngine | None, seconds: float) -> None:
    """Sleep inside a workflow so that a recovered run sleeps only the remainder."""
    ctx = current_workflow()
    if ctx is None or engine is None:
        time.sleep(seconds)
        return
    wake_ms = wake_time(engine, ctx, seconds)
    with engine.waiting():
        while now_ms() < wake_ms:
            if ctx.cancelled.wait(_next_wait(ctx, wake_ms)):
                raise DBOSWorkflowCancelledError(ctx.workflow_id)
    ctx.check_live()


async def durable_sleep_async(engine: WorkflowEngine | None, seconds: float) -> None:
    """Async twin of `durable_sleep`."""
    ctx = current_workflow()
    if ctx is None or engine is None:
        await asyncio.sleep(seconds)
        return
    wake_ms = wake_time(engine, ctx, seconds)
    with engine.waiting():
        while now_ms() < wake_ms:
            # Short slices, so a cancellation from another thread is noticed promptly.
            await asyncio.sleep(min(_next_wait(ctx, wake_ms), 0.1))
    ctx.check_live()
