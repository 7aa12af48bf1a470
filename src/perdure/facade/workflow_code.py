"""The `DBOS` classmethods workflow code calls to wait on several things at once, to reserve
a step's position ahead of running it, and to version its own code with patches."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from perdure.error import DBOSException
from perdure.execution import coordination
from perdure.execution.context import current_step, current_workflow
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.steps import (
    RetryPolicy,
    StepOptions,
    in_worker_thread,
    policy_of,
    run_step,
    run_step_async,
)
from perdure.execution.workflow import WorkflowEngine
from perdure.facade.base import FacadeBase


class StepReservation:
    """A position drawn by `DBOS.reserve_step`, where one step runs later (with `run` or
    `run_async`), from the workflow that reserved it, outside any step. A reservation that
    never runs leaves a gap in the positions, which replays leave the same."""

    def __init__(self, engine: WorkflowEngine, workflow_id: str, position: int) -> None:
        self._engine = engine
        self._workflow_id = workflow_id
        self._position = position
        self._used = False

    @property
    def step_id(self) -> int:
        """The reserved position."""
        return self._position

    def _claim(self) -> None:
        if self._used:
            raise DBOSException(f"Step reservation {self._position} was already run once.")
        ctx = current_workflow()
        if ctx is None or ctx.workflow_id != self._workflow_id or current_step() is not None:
            raise DBOSException(
                f"Step {self._position} was reserved in workflow {self._workflow_id!r}: run it "
                "from that workflow's code, outside any step."
            )
        self._used = True

    def run(
        self,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Run ``func`` as the step at the reserved position (an async ``func`` on an event
        loop of its own) and checkpoint it; a replay returns the checkpoint."""
        self._claim()
        name, policy = policy_of(dbos_step_options)
        name = name or func.__qualname__
        policy.check(name, is_async=inspect.iscoroutinefunction(func))
        if inspect.iscoroutinefunction(func):
            return asyncio.run(self._run_async(func, args, kwargs, name, policy))
        return run_step(self._engine, func, args, kwargs, name=name, policy=policy,
                        position=self._position)  # fmt: skip

    async def run_async(
        self,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Async twin of `run`: a plain ``func`` runs in a worker thread."""
        self._claim()
        name, policy = policy_of(dbos_step_options)
        name = name or func.__qualname__
        if inspect.iscoroutinefunction(func):
            policy.check(name, is_async=True)
            return await self._run_async(func, args, kwargs, name, policy)
        policy.check(name, is_async=False)
        return await self._run_async(in_worker_thread(func), args, kwargs, name, policy)

    async def _run_async(
        self,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
        policy: RetryPolicy,
    ) -> Any:
        return await run_step_async(self._engine, func, args, kwargs, name=name, policy=policy,
                                    position=self._position)  # fmt: skip


class WorkflowCodeFacade(FacadeBase):
    """Durable waits, step reservations and patches."""

    @classmethod
    def reserve_step(cls) -> StepReservation:
        """Take the next position of this workflow now, for a step that runs there later
        (for example from a task started after other steps): positions stay deterministic
        whatever order the tasks run in.

        Raises:
            DBOSException: Outside workflow code, or inside a step.
        """
        ctx = current_workflow()
        if ctx is None or current_step() is not None:
            raise DBOSException(
                "DBOS.reserve_step must be called from workflow code, outside any step."
            )
        engine = cls._require_runtime().engine
        position = ctx.take_position()
        ctx.check_live()
        return StepReservation(engine, ctx.workflow_id, position)

    @classmethod
    def wait_first(
        cls, handles: Sequence[WorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandle[Any]:
        """Wait until one of ``handles``' workflows finishes; return its handle.

        Inside a workflow the choice is recorded, so a replay returns the same handle. The
        wait is woken by each workflow's end (from any process); ``polling_interval_sec`` is
        accepted for DBOS compatibility (Perdure's own polling interval is the fallback).

        Raises:
            ValueError: No handles, or the same workflow twice.
        """
        del polling_interval_sec
        engine = cls._require_runtime().engine
        by_id = {h.workflow_id: h for h in handles}
        return by_id[coordination.wait_first(engine, [h.workflow_id for h in handles])]

    @classmethod
    async def wait_first_async(
        cls, handles: Sequence[WorkflowHandleAsync[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `wait_first`: waits on the event loop."""
        del polling_interval_sec
        engine = cls._require_runtime().engine
        by_id = {h.workflow_id: h for h in handles}
        ids = [h.workflow_id for h in handles]
        return by_id[await coordination.wait_first_async(engine, ids)]

    @classmethod
    async def asyncio_wait(
        cls,
        fs: Sequence[Awaitable[Any]],
        *,
        timeout: float | None = None,
        return_when: str = asyncio.ALL_COMPLETED,
    ) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
        """``asyncio.wait`` for workflow code: which awaitables were done is recorded, so a
        replay returns the same split. Outside a workflow it is ``asyncio.wait``."""
        runtime = cls._runtime
        engine = runtime.engine if runtime is not None else None
        return await coordination.asyncio_wait(
            engine, list(fs), timeout=timeout, return_when=return_when
        )

    @classmethod
    def patch(cls, patch_name: str) -> bool:
        """True where this workflow takes the new code path named ``patch_name``.

        Write ``if DBOS.patch("name"): new() else: old()``. A workflow that started before
        the patch was deployed (it recorded another operation at this point) gets False and
        replays the old path; every other execution records a marker and gets True.
        """
        return coordination.patch(cls._require_runtime().engine, patch_name)

    @classmethod
    async def patch_async(cls, patch_name: str) -> bool:
        """Async twin of `patch` (call it from sequential workflow code)."""
        return coordination.patch(cls._require_runtime().engine, patch_name)

    @classmethod
    def deprecate_patch(cls, patch_name: str) -> bool:
        """Always True: once no workflow that predates the patch is left, replace ``patch``
        with this. It steps over markers recorded earlier and records no new ones, so the
        ``patch`` call can be deleted once every workflow that recorded one has finished."""
        return coordination.patch(cls._require_runtime().engine, patch_name, deprecated=True)

    @classmethod
    async def deprecate_patch_async(cls, patch_name: str) -> bool:
        """Async twin of `deprecate_patch`."""
        return coordination.patch(cls._require_runtime().engine, patch_name, deprecated=True)
