"""The `DBOS` facade: decorators and classmethods of the public API, delegating to `Runtime`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast, overload

from typing_extensions import ParamSpec

from perdure.config import DBOSConfig, Settings, parse_config
from perdure.error import DBOSInitializationError
from perdure.execution import steps, transaction
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import StepStatus, current_step, current_workflow_id, sql_session
from perdure.execution.handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
    get_status,
)
from perdure.execution.registry import MethodKind, RegisteredWorkflow
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.facade.base import FacadeBase
from perdure.facade.management import ManagementFacade
from perdure.facade.messaging import MessagingFacade
from perdure.facade.queues import QueueFacade
from perdure.facade.scheduling import SchedulingFacade
from perdure.logs import get_logger
from perdure.runtime import Runtime, invocation

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
P = ParamSpec("P")


class _DBOSMeta(type):
    """Class-level properties (``DBOS.workflow_id`` ...), which plain classes cannot have."""

    @property
    def workflow_id(cls) -> str | None:
        """The ID of the workflow executing here (also inside its steps), else None."""
        return current_workflow_id()

    @property
    def step_id(cls) -> int | None:
        """The position of the step executing here, else None."""
        step = current_step()
        return step.step_id if step is not None else None

    @property
    def step_status(cls) -> StepStatus | None:
        """The running step's position and attempt numbers, else None."""
        step = current_step()
        if step is None:
            return None
        return StepStatus(step.step_id, step.current_attempt, step.max_attempts)

    @property
    def sql_session(cls) -> Any:
        """The SQLAlchemy ``Session`` of the running ``@DBOS.transaction``."""
        session = sql_session()
        if session is None:
            raise DBOSInitializationError(
                "DBOS.sql_session is only available inside a @DBOS.transaction function."
            )
        return session

    @property
    def logger(cls) -> logging.Logger:
        """The ``perdure`` logger; records carry ``workflow_id``."""
        return get_logger("perdure")

    @property
    def config(cls) -> Settings:
        """The validated configuration of the current instance."""
        return DBOS._require_runtime().settings

    @property
    def application_version(cls) -> str:
        """The ``application_version`` of the current instance (``""``: unversioned)."""
        return DBOS._require_runtime().settings.application_version

    @property
    def executor_id(cls) -> str:
        """The ``executor_id`` of the current instance."""
        return DBOS._require_runtime().settings.executor_id

    @property
    def span(cls) -> Any | None:
        """The OpenTelemetry span of the running workflow or step (with ``enable_otlp``);
        None without tracing or outside them."""
        if DBOS._runtime is None or not DBOS._runtime.settings.enable_otlp:
            return None
        from opentelemetry import trace  # noqa: PLC0415 - only with tracing enabled

        span = trace.get_current_span()
        return span if span.get_span_context().is_valid else None


class DBOS(
    ManagementFacade,
    MessagingFacade,
    QueueFacade,
    SchedulingFacade,
    FacadeBase,
    metaclass=_DBOSMeta,
):
    """Entry point of Perdure: configure with ``DBOS(config=...)``, then ``DBOS.launch()``."""

    def __init__(
        self, *, config: DBOSConfig, fastapi: Any | None = None, flask: Any | None = None
    ) -> None:
        settings = parse_config(config)
        if DBOS._runtime is not None:
            DBOS._runtime.destroy()
        DBOS._runtime = Runtime(settings, DBOS._registry, DBOS._queues, DBOS._schedules)
        # DBOS 2.x: launch and stop with a FastAPI app; workflow IDs from a request header.
        if fastapi is not None:
            from perdure.web import fastapi as with_fastapi  # noqa: PLC0415 - optional

            with_fastapi.attach(
                fastapi, launch=DBOS.launch, destroy=DBOS.destroy
            )  # launch: idempotent
        if flask is not None:
            from perdure.web import flask as with_flask  # noqa: PLC0415 - optional

            with_flask.attach(flask)

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Migrate the system database, start background work and recover pending workflows."""
        cls._require_runtime().launch()

    @classmethod
    def destroy(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0
    ) -> None:
        """Shut down; workflows still running stay PENDING and resume at the next launch."""
        if cls._runtime is not None:
            cls._runtime.destroy(workflow_completion_timeout_sec)
            cls._runtime = None
        for database in cls._datasources:
            database.dispose()
        if destroy_registry:
            cls._registry.clear()
            cls._queues.clear()
            cls._schedules.clear()

    @classmethod
    def reset_system_database(cls) -> None:
        """Delete every workflow record (before ``launch`` only)."""
        cls._require_runtime().reset_system_database()

    # -- decorators ------------------------------------------------------------------------------

    @classmethod
    def workflow(
        cls, *, name: str | None = None, max_recovery_attempts: int = 100
    ) -> Callable[[F], F]:
        """Make a function a durable workflow (sync or async)."""

        def decorate(func: F) -> F:
            entry = cls._registry.add_workflow(
                name or func.__qualname__, func, max_recovery_attempts=max_recovery_attempts
            )
            if entry.is_async:

                @functools.wraps(func)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    _check_registered_class(entry, args)
                    return await cls._require_runtime().call_workflow_async(entry, args, kwargs)

                wrapper: Any = run_async
            else:

                @functools.wraps(func)
                def run(*args: Any, **kwargs: Any) -> Any:
                    _check_registered_class(entry, args)
                    return cls._require_runtime().call_workflow(entry, args, kwargs)

                wrapper = run
            wrapper.__perdure_workflow__ = entry
            return cast(F, wrapper)

        return decorate

    @classmethod
    def step(
        cls,
        *,
        name: str | None = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
    ) -> Callable[[F], F]:
        """Make a function a step: checkpointed inside workflows, retried if asked."""
        policy = steps.RetryPolicy(retries_allowed, interval_seconds, max_attempts, backoff_rate)

        def decorate(func: F) -> F:
            step_name = name or func.__qualname__
            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    engine = cls._engine_if_in_workflow()
                    if engine is None:
                        return await func(*args, **kwargs)
                    return await steps.run_step_async(
                        engine, func, args, kwargs, name=step_name, policy=policy
                    )

                return cast(F, run_async)

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                engine = cls._engine_if_in_workflow()
                if engine is None:
                    return func(*args, **kwargs)
                return steps.run_step(engine, func, args, kwargs, name=step_name, policy=policy)

            return cast(F, run)

        return decorate

    @classmethod
    def transaction(
        cls, isolation_level: str = "SERIALIZABLE", *, name: str | None = None
    ) -> Callable[[F], F]:
        """Run a function in a database transaction; inside a workflow it commits exactly once."""

        level = transaction.isolation(isolation_level)

        def target() -> tuple[WorkflowEngine, ApplicationDatabase]:
            runtime = cls._require_runtime()
            return runtime.engine, runtime.app_db

        def decorate(func: F) -> F:
            run = transaction.transactional(
                func, name=name, level=level, target=target, decorator="@DBOS.transaction()"
            )
            return cast(F, run)

        return decorate

    @classmethod
    def dbos_class(cls, class_name: str | None = None) -> Callable[[type[R]], type[R]]:
        """Register a class whose methods are workflows, so recovery can find them."""

        def decorate(klass: type[R]) -> type[R]:
            cls._registry.add_class(klass, class_name)
            return klass

        return decorate

    @classmethod
    def _engine_if_in_workflow(cls) -> Any:
        if current_workflow_id() is None or cls._runtime is None:
            return None
        return cls._runtime.engine

    # -- starting and finding workflows ----------------------------------------------------------

    @classmethod
    def _invocation(
        cls, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Invocation:
        bound = getattr(func, "__self__", None)
        target = getattr(func, "__func__", func)
        entry: RegisteredWorkflow | None = getattr(target, "__perdure_workflow__", None)
        if entry is None:
            raise DBOSInitializationError(
                f"{getattr(func, '__qualname__', func)!r} is not a workflow: decorate it with "
                "@DBOS.workflow() before passing it to start_workflow."
            )
        full_args = (bound, *args) if bound is not None else args
        _check_registered_class(entry, full_args)
        return invocation(entry, full_args, kwargs)

    @overload
    @classmethod
    def start_workflow(
        cls, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @overload
    @classmethod
    def start_workflow(
        cls, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @classmethod
    def start_workflow(cls, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start a workflow in the background; returns once it is durably recorded."""
        return cls._require_runtime().start_workflow(cls._invocation(func, args, kwargs))

    @overload
    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]: ...

    @overload
    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]: ...

    @classmethod
    async def start_workflow_async(cls, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Async twin of `start_workflow`; async workflows run as tasks on this event loop."""
        runtime = cls._require_runtime()
        return await runtime.start_workflow_async(cls._invocation(func, args, kwargs))

    @classmethod
    def retrieve_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to an existing workflow (raises if the ID is unknown)."""
        engine = cls._require_runtime().engine
        handle: WorkflowHandle[Any] = WorkflowHandle(engine, workflow_id)
        handle.get_status()  # raises DBOSNonExistentWorkflowError for an unknown ID
        return handle

    @classmethod
    async def retrieve_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """Async twin of `retrieve_workflow` (its database read runs off the event loop)."""
        handle = await asyncio.to_thread(cls.retrieve_workflow, workflow_id)
        return WorkflowHandleAsync(cls._require_runtime().engine, handle.workflow_id)

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for workflow ``workflow_id`` to end; its output (or raise its error).

        Inside a workflow the outcome is recorded as a step, like a handle's ``get_result``.
        """
        handle: WorkflowHandle[Any] = WorkflowHandle(cls._require_runtime().engine, workflow_id)
        return handle.get_result()

    @classmethod
    async def get_result_async(cls, workflow_id: str) -> Any:
        """Async twin of `get_result`: waits on the event loop."""
        engine = cls._require_runtime().engine
        return await WorkflowHandleAsync[Any](engine, workflow_id).get_result()

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's status, or None if no workflow has that ID."""
        return get_status(cls._require_runtime().engine, workflow_id)

    @classmethod
    async def get_workflow_status_async(cls, workflow_id: str) -> WorkflowStatus | None:
        """Async twin of `get_workflow_status` (its database read runs off the event loop)."""
        return await asyncio.to_thread(cls.get_workflow_status, workflow_id)

    # -- durable time ----------------------------------------------------------------------------

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Sleep durably: a recovered workflow sleeps only the remaining time."""
        steps.durable_sleep(cls._engine_if_in_workflow(), seconds)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        """Async twin of `sleep`."""
        await steps.durable_sleep_async(cls._engine_if_in_workflow(), seconds)


def _check_registered_class(entry: RegisteredWorkflow, args: tuple[Any, ...]) -> None:
    """A method workflow whose class lacks ``@DBOS.dbos_class()`` would record ``self``."""
    defined_in_class = "." in entry.func.__qualname__.rsplit("<locals>.", 1)[-1]
    if entry.kind != MethodKind.FUNCTION or not args or not defined_in_class:
        return
    first = args[0]
    if isinstance(first, DBOSConfiguredInstance) or (
        isinstance(first, type) and getattr(first, entry.func.__name__, None) is not None
    ):
        owner = first if isinstance(first, type) else type(first)
        raise DBOSInitializationError(
            f"Workflow {entry.name!r} is a method of {owner.__qualname__!r}, which is not "
            "registered: decorate the class with @DBOS.dbos_class() so recovery can find the "
            "instance (or class) it runs on."
        )


class DBOSConfiguredInstance:
    """Base class for objects whose workflow methods can be recovered.

    Each instance has a ``config_name``, unique within its class; recovery finds the instance
    by class and name, so create the same instances before ``DBOS.launch()`` in every process.
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        DBOS._registry.add_instance(config_name, self)
