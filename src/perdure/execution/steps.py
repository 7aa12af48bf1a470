"""Steps inside workflows: replay or run with retries, then checkpoint in one round trip."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from typing_extensions import TypedDict

from perdure import clock
from perdure.clock import now_ms
from perdure.error import (
    DBOSInitializationError,
    DBOSMaxStepRetriesExceeded,
    DBOSStepTimeoutError,
    DBOSWorkflowCancelledError,
)
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
_PREEMPT_CHECK_SEC = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    """How a step retries: ``max_attempts`` tries, waiting ``interval * backoff**n`` between;
    and, for async steps, how long an attempt may run and whether a cancel interrupts it."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    # Called with an attempt's error: False ends the step with that error, without retries.
    should_retry: Callable[[BaseException], Any] | None = None
    timeout_seconds: float | None = None  # per attempt (async steps)
    preemptible: bool = False  # a cancel of the workflow interrupts the attempt (async steps)

    def check(self, name: str, *, is_async: bool) -> None:
        """Refuse options a step of this kind cannot honour, at decoration time.

        Raises:
            DBOSInitializationError: An async ``should_retry``, ``timeout_seconds`` or
                ``preemptible`` on a sync step, or a timeout that is not a positive number.
        """
        problems = []
        if not is_async and inspect.iscoroutinefunction(self.should_retry):
            problems.append("an async should_retry")
        if not is_async and self.timeout_seconds is not None:
            problems.append("timeout_seconds")
        if not is_async and self.preemptible:
            problems.append("preemptible=True")
        if problems:
            raise DBOSInitializationError(
                f"Step {name!r} is a plain function, so it cannot have {' or '.join(problems)}: "
                "a running thread cannot be interrupted. Make the step async, or drop the option."
            )
        timeout = self.timeout_seconds
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise DBOSInitializationError(
                f"Step {name!r}: timeout_seconds must be a positive number, not {timeout!r}."
            )

    @property
    def attempts(self) -> int:
        return self.max_attempts if self.retries_allowed else 1

    @property
    def retry_limit(self) -> int | None:
        """``max_attempts`` as ``DBOS.step_status`` reports it: None for a step without retries."""
        return self.max_attempts if self.retries_allowed else None

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(self.interval_seconds * self.backoff_rate ** (attempt - 1))


class StepOptions(TypedDict, total=False):
    """The options of `DBOS.run_step` (and a step reservation's ``run``): those of
    ``@DBOS.step()``."""

    name: str | None
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    should_retry: Callable[[BaseException], Any] | None
    preemptible: bool
    timeout_seconds: float | None


def in_worker_thread(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``func`` as a coroutine function that runs it in a worker thread (with the caller's
    context): a plain function run as an async step takes its position on the event loop."""

    async def run(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)

    return run


def policy_of(options: StepOptions | None) -> tuple[str | None, RetryPolicy]:
    """The step name and policy ``options`` give; an unknown key is refused.

    Raises:
        DBOSInitializationError: A key `StepOptions` does not define.
    """
    given: dict[str, Any] = dict(options or {})
    unknown = sorted(set(given) - set(StepOptions.__annotations__))
    if unknown:
        raise DBOSInitializationError(
            f"run_step: unknown step option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(StepOptions.__annotations__)}."
        )
    name = given.pop("name", None)
    return name, RetryPolicy(**given)


@dataclass
class _StepRun:
    ctx: WorkflowContext
    position: int
    name: str
    started_ms: int
    errors: list[Exception] = field(default_factory=list)  # each failed attempt's, in order


def _begin(
    engine: WorkflowEngine, ctx: WorkflowContext, name: str, position: int | None = None
) -> tuple[_StepRun, Any, bool]:
    """Take the next position (or use one reserved earlier); return (run, recorded value,
    whether it was recorded)."""
    if position is None:
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


def _may_retry(policy: RetryPolicy, exc: Exception) -> bool:
    """Whether ``should_retry`` lets the step try again after ``exc`` (no predicate: yes)."""
    if policy.should_retry is None or is_system_failure(exc):
        return True
    return bool(policy.should_retry(exc))


async def _may_retry_async(policy: RetryPolicy, exc: Exception) -> bool:
    if policy.should_retry is None or is_system_failure(exc):
        return True
    verdict = policy.should_retry(exc)
    return bool(await verdict if inspect.isawaitable(verdict) else verdict)


def _after_failure(
    engine: WorkflowEngine,
    run: _StepRun,
    policy: RetryPolicy,
    attempt: int,
    exc: Exception,
    *,
    retryable: bool = True,
) -> float:
    """After a failed attempt: the delay before the next one, or record the failure and raise.

    A failure of the system database (a Perdure call inside the step) is not the step's
    outcome: it is raised without a record, and the workflow is resumed later. An error
    ``should_retry`` refused (not ``retryable``) is the step's outcome as it is.
    """
    if is_system_failure(exc):
        raise exc
    run.errors.append(exc)
    if not retryable:
        _record_error(engine, run, exc)
        raise exc
    if attempt < policy.attempts:
        delay = policy.delay_after(attempt)
        logger.warning(
            "Step %r attempt %d failed (%r); retrying in %.2fs", run.name, attempt, exc, delay
        )
        return delay
    error: Exception = exc
    if policy.retries_allowed:
        error = DBOSMaxStepRetriesExceeded(run.name, policy.attempts, list(run.errors))
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
    position: int | None = None,
) -> Any:
    """Call a sync step: a plain call outside workflows, durable inside one (at
    ``position`` if one was reserved with `DBOS.reserve_step`)."""
    ctx = current_workflow()
    if ctx is None:
        return func(*args, **kwargs)
    run, recorded, was_recorded = _begin(engine, ctx, name, position)
    if was_recorded:
        return recorded
    with engine.step_span(ctx, name, run.position):
        for attempt in range(1, policy.attempts + 1):
            token = set_step(StepContext(run.position, attempt, policy.retry_limit))
            try:
                value = func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - _after_failure retries, or records, raises
                retryable = _may_retry(policy, exc)
                delay = _after_failure(engine, run, policy, attempt, exc, retryable=retryable)
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
    position: int | None = None,
) -> Any:
    """Await an async step: a plain call outside workflows, durable inside one (at
    ``position`` if one was reserved with `DBOS.reserve_step`)."""
    ctx = current_workflow()
    if ctx is None:
        return await func(*args, **kwargs)
    run, recorded, was_recorded = _begin(engine, ctx, name, position)
    if was_recorded:
        return recorded
    with engine.step_span(ctx, name, run.position):
        for attempt in range(1, policy.attempts + 1):
            token = set_step(StepContext(run.position, attempt, policy.retry_limit))
            try:
                value = await _attempt(policy, run, func(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - _after_failure retries, or records, raises
                retryable = await _may_retry_async(policy, exc)
                delay = _after_failure(engine, run, policy, attempt, exc, retryable=retryable)
            else:
                return _record(engine, run, value=value)
            finally:
                reset_step(token)
            await asyncio.sleep(delay)
            ctx.check_live()
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _attempt(policy: RetryPolicy, run: _StepRun, call: Awaitable[Any]) -> Any:
    """One attempt of an async step, interrupted at its timeout or, if preemptible, when its
    workflow is cancelled (checked every 0.1 s: a cancel may come from another thread)."""
    if policy.timeout_seconds is None and not policy.preemptible:
        return await call
    task = asyncio.ensure_future(call)
    loop = asyncio.get_running_loop()
    deadline = None if policy.timeout_seconds is None else loop.time() + policy.timeout_seconds
    while True:
        slice_sec = _PREEMPT_CHECK_SEC if policy.preemptible else None
        if deadline is not None:
            left = max(0.0, deadline - loop.time())
            slice_sec = left if slice_sec is None else min(slice_sec, left)
        done, _ = await asyncio.wait({task}, timeout=slice_sec)
        if done:
            return task.result()
        stop: BaseException | None = None
        if policy.preemptible and run.ctx.cancelled.is_set():
            stop = DBOSWorkflowCancelledError(workflow_id=run.ctx.workflow_id)
        elif deadline is not None and loop.time() >= deadline:
            assert policy.timeout_seconds is not None  # noqa: S101 - set with the deadline
            stop = DBOSStepTimeoutError(run.name, policy.timeout_seconds)
        if stop is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=_PREEMPT_CHECK_SEC)  # let it unwind
            raise stop


def wake_time(engine: WorkflowEngine, ctx: WorkflowContext, seconds: float) -> int:
    """The recorded wake-up time, checkpointed before the first sleep begins."""
    run, recorded, was_recorded = _begin(engine, ctx, SLEEP_STEP_NAME)
    if was_recorded:
        return int(recorded)
    return int(_record(engine, run, value=run.started_ms + round(seconds * 1000)))


def _until(ctx: WorkflowContext, wake_ms: int) -> int:
    """When to look again (epoch ms): the wake-up time or the deadline, whichever is first."""
    ctx.check_live()
    return wake_ms if ctx.deadline_epoch_ms is None else min(wake_ms, ctx.deadline_epoch_ms)


def durable_sleep(engine: WorkflowEngine | None, seconds: float) -> None:
    """Sleep inside a workflow so that a recovered run sleeps only the remainder."""
    ctx = current_workflow()
    if ctx is None or engine is None:
        time.sleep(seconds)
        return
    wake_ms = wake_time(engine, ctx, seconds)
    with engine.waiting():
        while now_ms() < wake_ms:
            if clock.wait_until(ctx.cancelled, _until(ctx, wake_ms)):
                raise DBOSWorkflowCancelledError(workflow_id=ctx.workflow_id)
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
            await clock.sleep_until_async(_until(ctx, wake_ms), at_most_sec=0.1)
    ctx.check_live()
