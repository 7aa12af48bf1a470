"""One configured Perdure instance: owns storage, the worker pool and background threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perdure.admin import AdminServer
from perdure.config import AdminServerSettings, Settings, apply_log_level
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInitializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import current_workflow, take_enqueue_options
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync
from perdure.execution.heartbeat import Heartbeat
from perdure.execution.notifier import Notifier, channel
from perdure.execution.pool import WorkerPool
from perdure.execution.registry import MethodKind, RegisteredWorkflow, Registry
from perdure.execution.takeover import Takeover
from perdure.execution.tracing import Tracing
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.logs import get_logger
from perdure.management import WorkflowManager
from perdure.management.versions import register_version
from perdure.messaging.operations import Messaging
from perdure.messaging.wakeups import WakeUps
from perdure.queues.dequeue import Dequeuer
from perdure.queues.enqueue_options import EnqueueOptions, enqueue_in_app, placement_on
from perdure.queues.queue import QueueDirectory, QueueSpec
from perdure.scheduling.scheduler import DeclaredSchedules, Scheduler
from perdure.serialization import Payloads
from perdure.storage import open_store, redact_url
from perdure.storage.migrations import check_version
from perdure.storage.store import Listening, Store

logger = get_logger(__name__)


class Runtime:
    """Everything one ``DBOS(config=...)`` owns once launched."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        queues: QueueDirectory | None = None,
        schedules: DeclaredSchedules | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.queues = queues if queues is not None else QueueDirectory()
        self.schedules = schedules if schedules is not None else DeclaredSchedules()
        self._dequeuer: Dequeuer | None = None
        self._heartbeat: Heartbeat | None = None
        self._takeover: Takeover | None = None
        self._scheduler: Scheduler | None = None
        self._engine: WorkflowEngine | None = None
        self._app_db: ApplicationDatabase | None = None
        self._store: Store | None = None
        self._pool: WorkerPool | None = None
        self._listener: Listening | None = None
        self.wake_ups: WakeUps | None = None  # how this process reads notifications
        self._messaging: Messaging | None = None
        self.admin_server: AdminServer | None = None
        self._tracing: Tracing | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def launch(self) -> None:
        """Migrate the system database, then start heartbeats, takeover and the loops.

        A PostgreSQL server that is down or starting is waited for, up to
        ``system_database_wait_sec``.
        """
        if self._engine is not None:
            return
        apply_log_level(self.settings)
        settings = self.settings
        store = open_store(
            settings.system_database_url,
            max_connections=settings.sys_db_pool_size or settings.max_executor_threads + 4,
            connect_wait_sec=settings.system_database_wait_sec,
        )
        try:
            if settings.run_migrations:
                store.migrate()
            else:  # the schema is someone else's to create: only check it is current
                check_version(
                    store.schema_version(),
                    "sqlite" if store.url.startswith("sqlite:") else "postgres",
                    url=redact_url(store.url),
                    require_current=True,
                )
            register_version(store, settings.application_version)
            if settings.enable_otlp:  # before any thread starts: missing packages fail here
                self._tracing = Tracing(settings.name, settings.otlp_traces_endpoints)
            self._app_db = ApplicationDatabase(
                settings.application_database_url, system_url=settings.system_database_url
            )
            self._app_db.ensure_schema()
        except BaseException:
            store.close()
            if self._tracing is not None:
                self._tracing.shutdown()  # its exporter threads, if it started any
                self._tracing = None
            raise
        self._store = store
        self._pool = WorkerPool(settings.max_executor_threads, name="perdure-workflow")
        self.notifier = notifier = Notifier(settings.notification_listener_polling_interval_sec)
        self.wake_ups = WakeUps(notifier)
        if settings.use_listen_notify:  # else waiters poll for other processes' writes
            self._listener = store.listen(self.wake_ups, notifier.signal_all)
        self._engine = WorkflowEngine(
            store=store,
            payloads=Payloads(
                settings.serializer,
                settings.payload_codec,
                pickle_keys=settings.pickle_signing_keys,
            ),
            registry=self.registry,
            pool=self._pool,
            executor_id=settings.executor_id,
            app_version=settings.application_version,
            notifier=self.notifier,
            tracing=self._tracing,
        )
        if settings.admin_server is not None:
            self._start_admin_server(settings.admin_server)
        self._heartbeat = Heartbeat(
            store,
            instance_id=self._engine.instance_id,
            executor_id=settings.executor_id,
            app_version=settings.application_version,
            interval_sec=settings.heartbeat_interval_sec,
            workflow_names=self.registry.workflow_names,
        )
        self._heartbeat.start()
        # Its first pass is the recovery at launch: the workflows of dead processes.
        self._takeover = Takeover(
            self._engine, self._heartbeat, dead_after_sec=settings.dead_executor_timeout_sec
        )
        self._takeover.start()
        self._dequeuer = Dequeuer(
            self._engine,
            self.queues,
            store,
            internal_polling_sec=settings.notification_listener_polling_interval_sec,
        )
        self._dequeuer.start()
        self._scheduler = Scheduler(
            self._engine,
            store,
            self.schedules,
            polling_interval_sec=settings.scheduler_polling_interval_sec,
        )
        self._scheduler.start()
        logger.info(
            "Perdure launched: app %r, executor %r, system database %s",
            settings.name,
            settings.executor_id,
            redact_url(store.url),
        )

    def _start_admin_server(self, admin: AdminServerSettings) -> None:
        assert self._engine is not None  # noqa: S101 - called by launch, after the engine
        # Lenient: a payload this process cannot decode is shown as such, not an error page.
        manager = WorkflowManager(
            self._engine.store,
            self._engine.payloads,
            engine=self._engine,
            lenient=True,
        )
        settings = self.settings
        self.admin_server = AdminServer(
            manager,
            admin,
            describe=lambda: {
                "application": settings.name,
                "executor_id": settings.executor_id,
                "application_version": settings.application_version,
            },
        )
        try:
            self.admin_server.start()
        except DBOSInitializationError:
            self.admin_server = None
            self.destroy()  # what launch started so far
            raise

    def wait_for_recovery(self, timeout_sec: float | None = None) -> None:
        """Block until the launch-time recovery (the takeover's first pass) is done."""
        if self._takeover is not None:
            self._takeover.first_pass_done.wait(timeout_sec)

    def destroy(self, workflow_completion_timeout_sec: float = 0) -> None:
        """Stop background work and close connections; running workflows stay PENDING."""
        if self.admin_server is not None:
            self.admin_server.stop()  # first: its requests use the store
            self.admin_server = None
        if self._scheduler is not None:
            self._scheduler.stop()  # first, like the dequeuer: it starts workflows
        if self._dequeuer is not None:
            self._dequeuer.stop()  # first: it submits work to the pool and reads the store
        if self._takeover is not None:
            self._takeover.stop()  # it, too, starts taken-over workflows
        if self._listener is not None:
            self._listener.stop()
        if self._pool is not None:
            self._pool.stop(workflow_completion_timeout_sec)
        if self._heartbeat is not None:
            # After the pool: while workflows still run here, this process proves them alive.
            self._heartbeat.stop()
        if self._app_db is not None:
            self._app_db.dispose()
        if self._store is not None:
            self._store.close()
        if self._tracing is not None:
            self._tracing.shutdown()  # exports the spans still pending
            self._tracing = None
        self._engine = self._store = self._pool = self._app_db = None
        self._listener = self._messaging = self._takeover = None
        self._dequeuer = self._scheduler = self._heartbeat = None

    def reset_system_database(self, url: str | None = None) -> None:
        """Drop every Perdure table in the system database, or in ``url`` (before launch)."""
        if self._engine is not None:
            raise DBOSInitializationError(
                "DBOS.reset_system_database() must be called before DBOS.launch(): it deletes "
                "every workflow record. Call DBOS.destroy() first if you really mean it."
            )
        reset_store(url or self.settings.system_database_url)

    @property
    def engine(self) -> WorkflowEngine:
        """The launched engine, or a clear error if ``DBOS.launch()`` was not called."""
        if self._engine is None:
            raise DBOSInitializationError(
                "Perdure is not launched: call DBOS.launch() after DBOS(config=...) and before "
                "running or starting workflows."
            )
        return self._engine

    @property
    def tracing(self) -> Tracing | None:
        """The spans of this instance once launched with ``enable_otlp``, else None."""
        return self._tracing

    @property
    def dequeuer(self) -> Dequeuer | None:
        """The dequeue loop, once launched."""
        return self._dequeuer

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler loop, once launched."""
        return self._scheduler

    def stored_queue(self, name: str) -> QueueSpec | None:
        """A queue definition stored in the system database (perhaps by another process)."""
        records = self.engine.store.list_queues((name,))
        return QueueSpec.from_record(records[0]) if records else None

    @property
    def messaging(self) -> Messaging:
        """Messages, events and streams over the launched engine."""
        if self._messaging is None:
            self._messaging = Messaging.of(self.engine)
        return self._messaging

    @property
    def app_db(self) -> ApplicationDatabase:
        """The database of ``@DBOS.transaction`` functions."""
        self.engine  # noqa: B018 - raises the "not launched" error
        assert self._app_db is not None  # noqa: S101 - set together with the engine
        return self._app_db

    # -- running workflows -------------------------------------------------------------------------

    def call_workflow(
        self, entry: RegisteredWorkflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A direct call of a sync workflow: runs in this thread and returns its result."""
        engine = self.engine
        call = invocation(entry, args, kwargs)
        started = engine.start(call)
        try:
            if started.active is None:
                return engine.await_result(started.workflow_id)
            return engine.execute(started.active, call)
        except DBOSWorkflowConflictIDError:
            return engine.await_result(started.workflow_id)
        except DBOSWorkflowCancelledError as exc:
            raise _for_caller(exc.workflow_id or started.workflow_id) from None

    async def call_workflow_async(
        self, entry: RegisteredWorkflow, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """A direct await of an async workflow: runs in this task and returns its result."""
        engine = self.engine
        call = invocation(entry, args, kwargs)
        started = engine.start(call)
        try:
            if started.active is None:
                return await engine.await_result_async(started.workflow_id)
            return await engine.execute_async(started.active, call)
        except DBOSWorkflowConflictIDError:
            return await engine.await_result_async(started.workflow_id)
        except DBOSWorkflowCancelledError as exc:
            raise _for_caller(exc.workflow_id or started.workflow_id) from None

    def start_workflow(self, call: Invocation) -> WorkflowHandle[Any]:
        """Record the workflow durably, then run it on the worker pool."""
        engine = self.engine
        started = engine.start(call)
        if started.active is not None:
            engine.execute_in_background(started.active, call)
        return WorkflowHandle(engine, started.workflow_id, started.active)

    async def start_workflow_async(self, call: Invocation) -> WorkflowHandleAsync[Any]:
        """Record the workflow durably, then run it: async ones as a task on this loop."""
        engine = self.engine
        started = engine.start(call)
        if started.active is not None:
            if call.entry.is_async:
                engine.execute_as_task(started.active, call)
            else:
                engine.execute_in_background(started.active, call)
        return WorkflowHandleAsync(engine, started.workflow_id, started.active)

    def enqueue_workflow(
        self, queue_name: str, spec: QueueSpec | None, call: Invocation
    ) -> WorkflowHandle[Any]:
        """Record the workflow ENQUEUED on the queue (``spec``: its definition, None for one no
        process declared yet, where it waits) and wake this process's dequeuer (other
        processes' wake through the database's notification)."""
        engine = self.engine
        placement = placement_on(spec, queue_name, call.entry.name, take_enqueue_options())
        started = engine.start(call, queued=placement)
        self.notifier.signal(channel("queue", queue_name))
        return WorkflowHandle(engine, started.workflow_id)

    def enqueue_with_options(
        self,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        find_queue: Callable[[str], QueueSpec | None],
    ) -> WorkflowHandle[Any]:
        """Record the workflow ``options`` name ENQUEUED (see `enqueue_in_app`: no check
        against this process's registry) and wake this process's dequeuer."""
        engine = self.engine
        workflow_id = enqueue_in_app(engine, options, args, kwargs, find_queue=find_queue)
        self.notifier.signal(channel("queue", options["queue_name"]))
        return WorkflowHandle(engine, workflow_id)


def reset_store(url: str) -> None:
    """Drop every Perdure table of the system database at ``url``."""
    store = open_store(url, max_connections=2)
    try:
        store.reset()
    finally:
        store.close()


def invocation(
    entry: RegisteredWorkflow, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Invocation:
    """Split a method's bound object (instance or class) from its recorded arguments."""
    if entry.kind in (MethodKind.INSTANCE, MethodKind.CLASS) and args:
        return Invocation(entry, args[0], tuple(args[1:]), kwargs)
    return Invocation(entry, None, tuple(args), kwargs)


def _for_caller(workflow_id: str) -> BaseException:
    """Inside a cancelled workflow the signal propagates; elsewhere it becomes catchable."""
    caller = current_workflow()
    if caller is not None:
        try:
            caller.check_live()  # the caller's own cancellation or deadline
        except DBOSWorkflowCancelledError as own:
            return own
    return DBOSAwaitedWorkflowCancelledError(workflow_id)
