"""State every part of the facade shares: the registry and the current runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar, TypeVar

from perdure.error import DBOSInitializationError
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import current_workflow
from perdure.execution.registry import Registry
from perdure.execution.steps import RetryPolicy, in_worker_thread, run_step, run_step_async
from perdure.runtime import Runtime

T = TypeVar("T")


class FacadeBase:
    """Holds the facade's only state: what decorators registered, and the configured runtime."""

    _registry: ClassVar[Registry] = Registry()
    _runtime: ClassVar[Runtime | None] = None
    # Databases of SQLAlchemyDatasources: their pooled connections close at each destroy (the
    # engines stay usable: a datasource outlives a destroy and a new DBOS(config=...)).
    _datasources: ClassVar[list[ApplicationDatabase]] = []

    @classmethod
    def _require_runtime(cls) -> Runtime:
        if cls._runtime is None:
            raise DBOSInitializationError(
                "Perdure is not configured: call DBOS(config={'name': 'my-app'}) and then "
                "DBOS.launch() before running workflows."
            )
        return cls._runtime

    @classmethod
    def _recorded(cls, name: str, operation: Callable[[], T]) -> T:
        """Run ``operation``; in workflow code as a step named ``name``, so a replay gets what
        it gave the first time instead of doing it again (DBOS records management calls so)."""
        runtime = cls._require_runtime()
        if current_workflow() is None:
            return operation()
        result: T = run_step(runtime.engine, operation, (), {}, name=name, policy=RetryPolicy())
        return result

    @classmethod
    async def _recorded_async(cls, name: str, operation: Callable[[], T]) -> T:
        """`_recorded` off the event loop; in a workflow the position is taken on the loop."""
        runtime = cls._require_runtime()
        if current_workflow() is None:
            return await asyncio.to_thread(operation)
        result: T = await run_step_async(
            runtime.engine, in_worker_thread(operation), (), {}, name=name, policy=RetryPolicy()
        )
        return result
