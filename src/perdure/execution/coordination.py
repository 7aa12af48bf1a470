"""Durable calls made from workflow code: wait for the first of several workflows, a durable
``asyncio.wait``, and patch markers that let changed code replay old histories."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from perdure.clock import now_ms
from perdure.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSPatchNondeterminismError,
)
from perdure.execution.context import WorkflowContext, current_workflow
from perdure.execution.notifier import channel
from perdure.execution.steps import RetryPolicy, run_step, run_step_async
from perdure.execution.workflow import WorkflowEngine
from perdure.storage.records import TERMINAL_STATUSES, StepRow

WAIT_FIRST_STEP_NAME = "DBOS.waitFirst"
ASYNCIO_WAIT_STEP_NAME = "DBOS.asyncio_wait"
PATCH_PREFIX = "DBOS.patch-"


def _distinct(workflow_ids: list[str]) -> tuple[str, ...]:
    if not workflow_ids:
        raise ValueError("wait_first needs at least one handle")
    if len(set(workflow_ids)) != len(workflow_ids):
        raise ValueError("wait_first was given the same workflow twice; pass distinct handles")
    return tuple(workflow_ids)


def _first_finished(engine: WorkflowEngine, workflow_ids: tuple[str, ...]) -> str | None:
    """The first of ``workflow_ids`` (in order) that has finished, else None."""
    for workflow_id in workflow_ids:
        row = engine.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError("target", workflow_id)
        if row.status in TERMINAL_STATUSES:
            return workflow_id
    return None


@contextmanager
def _watching(engine: WorkflowEngine, workflow_ids: tuple[str, ...]) -> Iterator[None]:
    """Registered as a waiter of each, so each one's end notifies (from any process)."""
    with ExitStack() as stack:
        for workflow_id in workflow_ids:
            stack.enter_context(engine.watching_end(workflow_id))
        yield


def _await_first(engine: WorkflowEngine, workflow_ids: tuple[str, ...]) -> str:
    with engine.waiting():
        found = _first_finished(engine, workflow_ids)
        if found is not None:
            return found
        with _watching(engine, workflow_ids):
            names = tuple(channel("end", w) for w in workflow_ids)
            check = lambda: _first_finished(engine, workflow_ids)  # noqa: E731
            done = engine.notifier.wait_for(names, check, deadline=None)
    assert done is not None  # noqa: S101 - no deadline: returns only once one finished
    return done


async def _await_first_async(engine: WorkflowEngine, workflow_ids: tuple[str, ...]) -> str:
    with engine.waiting():
        found = _first_finished(engine, workflow_ids)
        if found is not None:
            return found
        with _watching(engine, workflow_ids):
            names = tuple(channel("end", w) for w in workflow_ids)
            check = lambda: _first_finished(engine, workflow_ids)  # noqa: E731
            done = await engine.notifier.wait_for_async(names, check, deadline=None)
    assert done is not None  # noqa: S101 - no deadline: returns only once one finished
    return done


def wait_first(engine: WorkflowEngine, workflow_ids: list[str]) -> str:
    """The ID of the first of ``workflow_ids`` to finish; in a workflow, recorded as a step,
    so a replay returns the same one."""
    ids = _distinct(workflow_ids)
    policy = RetryPolicy()
    found: str = run_step(engine, _await_first, (engine, ids), {}, name=WAIT_FIRST_STEP_NAME,
                          policy=policy)  # fmt: skip
    return found


async def wait_first_async(engine: WorkflowEngine, workflow_ids: list[str]) -> str:
    """`wait_first` waiting on the event loop."""
    ids = _distinct(workflow_ids)
    found: str = await run_step_async(
        engine, _await_first_async, (engine, ids), {}, name=WAIT_FIRST_STEP_NAME,
        policy=RetryPolicy(),
    )  # fmt: skip
    return found


async def asyncio_wait(
    engine: WorkflowEngine | None,
    awaitables: list[Awaitable[Any]],
    *,
    timeout: float | None,
    return_when: str,
) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    """``asyncio.wait`` whose split into done and pending is recorded, so a replay gets the
    same split (it waits for the ones recorded done, and only for them)."""
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(a) for a in awaitables]
    if engine is None or current_workflow() is None:
        done, pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
        return set(done), set(pending)

    async def split() -> list[int]:
        done, _pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
        return [i for i, f in enumerate(futures) if f in done]

    # Let the tasks just made start first: each step takes its position as it starts, so they
    # take theirs (in the order given) before this wait takes its own, in every run alike. A
    # replay returns the recorded split without yielding, which would let the wait go first.
    await asyncio.sleep(0)
    indices: list[int] = await run_step_async(
        engine, split, (), {}, name=ASYNCIO_WAIT_STEP_NAME, policy=RetryPolicy()
    )
    recorded_done = {futures[i] for i in indices}
    if recorded_done:
        await asyncio.wait(recorded_done)
    return recorded_done, {f for f in futures if f not in recorded_done}


def _in_workflow(what: str) -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None:
        raise DBOSException(f"DBOS.{what} must be called from workflow code.")
    return ctx


def patch(engine: WorkflowEngine, name: str, *, deprecated: bool = False) -> bool:
    """Whether this execution takes the patched path named ``name``.

    A workflow that recorded an operation where the patch now stands started before the patch
    and goes on the old path (False); one that reaches it fresh records a marker there and
    takes the new path (True), so its replays take it too. A deprecated patch records no new
    markers and always takes the new path, still stepping over a marker recorded earlier.
    """
    ctx = _in_workflow("deprecate_patch" if deprecated else "patch")
    ctx.check_live()
    marker = PATCH_PREFIX + name

    def accept(recorded: StepRow | None) -> bool:
        if recorded is None:
            return not deprecated  # a new marker goes here
        return recorded.function_name == marker  # step over the marker recorded earlier

    position = ctx.take_position_if(accept)
    if deprecated:
        return True
    if position is None:
        return False
    if position not in ctx.recorded:
        step = engine.encoded_step(ctx, position, marker, now_ms(), output=None, error=None)
        standing = engine.record_step(ctx, step)
        if standing is not None and standing.function_name != marker:
            raise DBOSPatchNondeterminismError(
                ctx.workflow_id,
                name,
                f"operation {standing.function_name!r} was recorded at the patch's position "
                f"{position} by another execution, whose code differs from this one's: run "
                "one version of the workflow at a time",
            )
    return True
