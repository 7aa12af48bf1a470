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
from perdure.error import DBOSInitializationError, DBOSNonExistentWorkflowError
from perdure.execution import steps, transaction
from perdure.execution.app_database import ApplicationDatabase, sqlalchemy_url
from perdure.execution.auth import (
    Authentication,
    current_auth,
    roles_of,
    set_auth,
    with_required_roles,
)
from perdure.execution.checkpoint_table import is_sqlite_url, migrate_checkpoint_table
from perdure.execution.context import (
    StepStatus,
    current_step,
    current_workflow,
    current_workflow_id,
    sql_session,
)
from perdure.execution.handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
    get_status,
)
from perdure.execution.registry import MethodKind, RegisteredWorkflow
from perdure.execution.steps import StepOptions
from perdure.execution.tracing import DBOSTracer, TracerScope
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.facade.base import FacadeBase
from perdure.facade.management import ManagementFacade
from perdure.facade.messaging import MessagingFacade
from perdure.facade.queues import QueueFacade
from perdure.facade.scheduling import SchedulingFacade
from perdure.facade.versions import VersionsFacade
from perdure.facade.workflow_code import WorkflowCodeFacade
from perdure.logs import get_logger
from perdure.runtime import Runtime, invocation, reset_store
from perdure.serialization import WorkflowSerializationFormat, check_serialization_type
from perdure.storage import migrate_system_database
from perdure.validation import ArgsValidator

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
P = ParamSpec("P")
# The one-step workflow each step also is, for start_workflow / enqueue of a step, as in DBOS.
TEMP_WORKFLOW_PREFIX = "<temp>."
GET_STATUS = "DBOS.getStatus"
_logger = get_logger(__name__)


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
        """The running step's position and attempt numbers, else None.

        As in DBOS, ``current_attempt`` counts from 0, and both attempt numbers are None
        for a step without retries."""
        step = current_step()
        if step is None:
            return None
        if step.max_attempts is None:  # no retries: DBOS reports no attempt numbers
            return StepStatus(step.step_id, None, None)
        return StepStatus(step.step_id, step.current_attempt - 1, step.max_attempts)

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
    def authenticated_user(cls) -> str | None:
        """The user the running code acts for (`DBOSContextSetAuth`, or the identity a
        workflow was started with), else None."""
        return current_auth().user

    @property
    def authenticated_roles(cls) -> list[str] | None:
        """The roles granted to `authenticated_user`, else None."""
        roles = current_auth().roles
        return None if roles is None else list(roles)

    @property
    def assumed_role(cls) -> str | None:
        """The role a ``@DBOS.required_roles`` function assumed, else None."""
        return current_auth().assumed_role

    @property
    def span(cls) -> Any | None:
        """The OpenTelemetry span of the running workflow or step (with ``enable_otlp``);
        None without tracing or outside them."""
        if DBOS._runtime is None or not DBOS._runtime.settings.enable_otlp:
            return None
        from opentelemetry import trace  # noqa: PLC0415 - only with tracing enabled

        span = trace.get_current_span()
        return span if span.get_span_context().is_valid else None

    @property
    def tracer(cls) -> DBOSTracer:
        """DBOS's tracer interface: start spans of the application's own on Perdure's tracer
        (see `DBOSTracer`); usable at any time, it follows the current instance."""
        return _TRACER


def _tracer_scope() -> TracerScope:
    """What ``DBOS.tracer`` starts spans with: the current instance's tracing."""
    runtime = DBOS._runtime
    if runtime is None:
        return TracerScope()
    settings = runtime.settings
    attributes = {
        "perdure.executor_id": settings.executor_id,
        "perdure.app_version": settings.application_version,
    }
    return TracerScope(runtime.tracing, attributes, enabled=settings.enable_otlp)


_TRACER = DBOSTracer(_tracer_scope)


class DBOS(
    ManagementFacade,
    MessagingFacade,
    QueueFacade,
    SchedulingFacade,
    VersionsFacade,
    WorkflowCodeFacade,
    FacadeBase,
    metaclass=_DBOSMeta,
):
    """Entry point of Perdure: configure with ``DBOS(config=...)``, then ``DBOS.launch()``."""

    def __init__(
        self, *, config: DBOSConfig, fastapi: Any | None = None, flask: Any | None = None
    ) -> None:
        settings = parse_config(config)
        if DBOS._runtime is not None:
            # As in DBOS, the instance is a singleton until destroyed: the first config holds.
            _logger.warning(
                "DBOS(config=...) was called again while an instance exists: the existing "
                "instance and its configuration are kept. Call DBOS.destroy() first to "
                "configure a new one."
            )
            return
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
            database.dispose()  # a datasource keeps working: its engines reconnect when used
        if destroy_registry:
            cls._registry.clear()
            cls._queues.clear()
            cls._schedules.clear()
            # Forgotten with the registry, as DBOS does: a rewind drops the checkpoints of the
            # datasources the application declares now, not of those of an earlier one.
            cls._datasources.clear()

    @classmethod
    def reset_system_database(
        cls,
        *,
        system_database_url: str | None = None,
        schema: str | None = None,
        truncate: bool = False,
    ) -> None:
        """Delete every workflow record (before ``launch`` only), for tests.

        Args:
            system_database_url: The database to reset (default: the configured one). Without
                it and without ``DBOS(config=...)`` this does nothing but warn, as in DBOS.
            schema: DBOS's system schema name: Perdure's tables always live in their own
                schema, so only None, ``"dbos"`` or ``"perdure"`` are accepted.
            truncate: Accepted for DBOS compatibility: either way every record is gone and
                the next launch starts on an empty, current schema.
        """
        del truncate
        if schema not in (None, "dbos", "perdure"):
            raise DBOSInitializationError(
                f"reset_system_database(schema={schema!r}): Perdure's tables live in schema "
                "'perdure' (SQLite: the database file); leave schema out."
            )
        if system_database_url is not None and cls._runtime is None:
            reset_store(system_database_url)
        elif cls._runtime is not None:
            cls._runtime.reset_system_database(system_database_url)
        else:
            _logger.warning(
                "reset_system_database did nothing: no DBOS(config=...) exists and no "
                "system_database_url was given."
            )

    @staticmethod
    def migrate(
        system_database_url: str,
        *,
        schema: str = "dbos",
        application_role: str | None = None,
        sharding: bool = False,
    ) -> None:
        """Create or upgrade the system database's schema, as its owner; with
        ``application_role`` (PostgreSQL), grant that role what running workflows needs
        (and no right to alter the tables). The same as ``perdure migrate --app-role``.

        Raises:
            DBOSInitializationError: ``sharding`` (DBOS Cloud), another ``schema`` than the
                system one, a role on SQLite, or a database that cannot be migrated.
        """
        if sharding:
            raise DBOSInitializationError(
                "migrate(sharding=True): sharding is a DBOS Cloud feature."
            )
        if schema not in ("dbos", "perdure"):
            raise DBOSInitializationError(
                f"migrate(schema={schema!r}): Perdure's tables live in schema 'perdure'."
            )
        migrate_system_database(system_database_url, application_role=application_role)

    @classmethod
    def register_instance(cls, inst: object) -> None:
        """Accepted for DBOS 2.x compatibility: a `DBOSConfiguredInstance` registers itself
        when constructed, so there is nothing left to do.

        Raises:
            DBOSInitializationError: ``inst`` is not a `DBOSConfiguredInstance`.
        """
        if not isinstance(inst, DBOSConfiguredInstance):
            raise DBOSInitializationError(
                f"register_instance expects a DBOSConfiguredInstance, got {type(inst)!r}."
            )

    # -- decorators ------------------------------------------------------------------------------

    @classmethod
    def workflow(
        cls,
        *,
        name: str | None = None,
        max_recovery_attempts: int | None = 100,
        serialization_type: WorkflowSerializationFormat | None = None,
        validate_args: ArgsValidator | None = None,
    ) -> Callable[[F], F]:
        """Make a function a durable workflow (sync or async).

        Args:
            name: The name it is recorded under (default: its qualified name).
            max_recovery_attempts: Recoveries after which it is dead-lettered (None: no
                limit).
            serialization_type: Accepted for DBOS compatibility: DEFAULT or NATIVE (the
                configured serializer); PORTABLE is refused.
            validate_args: Called with ``(args, kwargs)`` before each execution; returns them,
                maybe converted, or raises (the workflow then ends with that error). Pass
                `pydantic_args_validator` to validate against the type hints.
        """
        check_serialization_type(serialization_type, "@DBOS.workflow")

        def decorate(func: F) -> F:
            entry = cls._registry.add_workflow(
                name or func.__qualname__,
                func,
                max_recovery_attempts=max_recovery_attempts,
                validate_args=validate_args,
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
        should_retry: Callable[[BaseException], Any] | None = None,
        preemptible: bool = False,
        timeout_seconds: float | None = None,
    ) -> Callable[[F], F]:
        """Make a function a step: checkpointed inside workflows, retried if asked.

        Args:
            name: The name it is recorded under (default: its qualified name).
            retries_allowed: Retry a failed attempt, up to ``max_attempts`` in all, waiting
                ``interval_seconds`` then ``backoff_rate`` times longer after each failure.
            should_retry: Called with an attempt's error; False ends the step with that error
                at once (an async predicate only on an async step).
            preemptible: Interrupt a running attempt when its workflow is cancelled (async
                steps).
            timeout_seconds: Interrupt an attempt that runs longer, with
                `DBOSStepTimeoutError` as its error (async steps; retried like any error).
        """
        policy = steps.RetryPolicy(
            retries_allowed,
            interval_seconds,
            max_attempts,
            backoff_rate,
            should_retry=should_retry,
            timeout_seconds=timeout_seconds,
            preemptible=preemptible,
        )

        return lambda func: cls._as_step(func, name, policy, startable=True)

    @classmethod
    def _as_step(
        cls, func: F, name: str | None, policy: steps.RetryPolicy, *, startable: bool
    ) -> F:
        """``func`` as a step; ``startable``: also a one-step workflow named
        ``<temp>.<step name>``, so ``start_workflow`` and ``enqueue`` accept it, as in DBOS."""
        step_name = name or func.__qualname__
        is_async = inspect.iscoroutinefunction(func)
        policy.check(step_name, is_async=is_async)
        wrapper: Any
        if is_async:

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                engine = cls._engine_if_in_workflow()
                if engine is None:
                    return await func(*args, **kwargs)
                return await steps.run_step_async(
                    engine, func, args, kwargs, name=step_name, policy=policy
                )

            wrapper = run_async
        else:

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                engine = cls._engine_if_in_workflow()
                if engine is None:
                    return func(*args, **kwargs)
                return steps.run_step(engine, func, args, kwargs, name=step_name, policy=policy)

            wrapper = run
        if startable:
            wrapper.__perdure_workflow__ = cls._registry.add_workflow(
                TEMP_WORKFLOW_PREFIX + step_name, wrapper, max_recovery_attempts=100
            )
        return cast(F, wrapper)

    @classmethod
    def run_step(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Call ``func`` as a step with ``dbos_step_options`` (those of ``@DBOS.step()``),
        without decorating it: checkpointed in a workflow, a plain call outside one. An async
        ``func`` runs to completion on an event loop of its own."""
        step = cls._step_of(func, dbos_step_options)
        if inspect.iscoroutinefunction(func):
            return asyncio.run(step(*args, **kwargs))
        return step(*args, **kwargs)

    @classmethod
    async def run_step_async(
        cls,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Async twin of `run_step`: an async ``func`` is awaited here; a plain one runs in a
        worker thread, its position in the workflow taken first, on the event loop."""
        if inspect.iscoroutinefunction(func):
            return await cls._step_of(func, dbos_step_options)(*args, **kwargs)
        options: StepOptions = {"name": func.__qualname__, **(dbos_step_options or {})}
        if options.get("name") is None:
            options["name"] = func.__qualname__
        return await cls._step_of(steps.in_worker_thread(func), options)(*args, **kwargs)

    @classmethod
    def _step_of(cls, func: F, options: StepOptions | None) -> F:
        """``func`` as a step for one `run_step` call (registered nowhere)."""
        name, policy = steps.policy_of(options)
        return cls._as_step(func, name, policy, startable=False)

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
    def required_roles(cls, roles: list[str]) -> Callable[[F], F]:
        """Allow calls of the function only to an identity holding one of ``roles``; while it
        runs it assumes the first it holds (`DBOS.assumed_role`). Put it under
        ``@DBOS.workflow()``: a workflow then checks at each execution, with the identity
        recorded at its start, so its recovery acts for the same user.

        Raises:
            DBOSNotAuthorizedError: At a call without an identity, or without those roles.
        """
        required = roles_of(roles) or ()

        def decorate(func: F) -> F:
            entry = getattr(func, "__perdure_workflow__", None)
            if entry is None:
                return with_required_roles(func, required)
            # Put over @DBOS.workflow(), as DBOS code often does: the workflow itself checks,
            # so start_workflow and enqueue are refused too and the refusal ends it in ERROR.
            cls._registry.require_workflow_roles(entry, required)
            return func

        return decorate

    @classmethod
    def default_required_roles(cls, roles: list[str]) -> Callable[[type[R]], type[R]]:
        """`required_roles` for every workflow method of the class that has none of its own
        (and registers the class, as ``@DBOS.dbos_class()`` does)."""
        required = roles_of(roles) or ()

        def decorate(klass: type[R]) -> type[R]:
            cls._registry.add_class(klass)
            cls._registry.require_roles(klass, required)
            return klass

        return decorate

    @classmethod
    def set_authentication(
        cls, authenticated_user: str | None, authenticated_roles: list[str] | None
    ) -> None:
        """Act for this user with these roles from here on in the current context (a thread
        or task); `DBOSContextSetAuth` does the same for a block."""
        set_auth(Authentication(authenticated_user, roles_of(authenticated_roles)))

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
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to a workflow.

        Raises:
            DBOSNonExistentWorkflowError: The ID is unknown. Checked only with
                ``existing_workflow``; without it, as in DBOS, the handle's ``get_result``
                waits for a workflow not started yet to start and end.
        """
        engine = cls._require_runtime().engine
        handle: WorkflowHandle[Any] = WorkflowHandle(
            engine, workflow_id, may_not_exist=not existing_workflow
        )
        if existing_workflow and cls.get_workflow_status(workflow_id) is None:
            raise DBOSNonExistentWorkflowError("target", workflow_id)
        return handle

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of `retrieve_workflow` (its database read runs off the event loop)."""
        handle = await asyncio.to_thread(cls.retrieve_workflow, workflow_id, existing_workflow)
        engine = cls._require_runtime().engine
        return WorkflowHandleAsync(engine, handle.workflow_id, may_not_exist=not existing_workflow)

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
        """The workflow's status, or None if no workflow has that ID (in workflow code
        recorded as a step, as in DBOS: a replay sees the status the first run saw)."""
        engine = cls._require_runtime().engine
        return cls._recorded(GET_STATUS, lambda: get_status(engine, workflow_id))

    @classmethod
    async def get_workflow_status_async(cls, workflow_id: str) -> WorkflowStatus | None:
        """Async twin of `get_workflow_status` (its database read runs off the event loop)."""
        engine = cls._require_runtime().engine
        return await cls._recorded_async(GET_STATUS, lambda: get_status(engine, workflow_id))

    # -- durable time ----------------------------------------------------------------------------

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Sleep durably: a recovered workflow sleeps only the remaining time. A duration of
        zero or less returns at once and records nothing, as in DBOS."""
        if seconds <= 0 and not _recorded_by_0_1():
            return
        steps.durable_sleep(cls._engine_if_in_workflow(), max(seconds, 0))

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        """Async twin of `sleep`."""
        if seconds <= 0 and not _recorded_by_0_1():
            return
        await steps.durable_sleep_async(cls._engine_if_in_workflow(), max(seconds, 0))


def _recorded_by_0_1() -> bool:
    """Whether a workflow recorded by Perdure 0.1 (which recorded zero-length sleeps) runs."""
    ctx = current_workflow()
    return ctx is not None and ctx.recorded_by_0_1


def run_dbos_database_migrations(
    system_database_url: str,
    *,
    app_database_url: str | None = None,
    schema: str = "dbos",
    application_role: str | None = None,
    sharding: bool = False,
) -> None:
    """`DBOS.migrate` under the name DBOS's command-line module gives it.

    With ``app_database_url`` (DBOS 2.x), also create the checkpoint table of
    ``@DBOS.transaction`` in that application database (nothing to create when it is the
    system database) and grant ``application_role`` what running transactions needs on it.

    Raises:
        DBOSInitializationError: As `DBOS.migrate`; or ``application_role`` with a SQLite
            application database (checked before anything is migrated).
    """
    app_db = app_database_url
    if app_db is not None and sqlalchemy_url(app_db) == sqlalchemy_url(system_database_url):
        app_db = None  # its checkpoints go into the system database's own tables
    if app_db is not None and application_role is not None and is_sqlite_url(app_db):
        raise DBOSInitializationError(
            "application_role is for PostgreSQL databases: the application database "
            f"{app_db!r} is SQLite, which has no roles."
        )
    DBOS.migrate(
        system_database_url, schema=schema, application_role=application_role, sharding=sharding
    )
    if app_db is not None:
        migrate_checkpoint_table(app_db, application_role=application_role)


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
