"""`replay`: re-execute recorded workflows against the current code and report where it diverges.

Each workflow's body runs again with its recorded inputs, and every operation it asks for is
served from its record (see `perdure.testing.replay_runtime`): no step body runs, nothing is
read beyond the record and nothing is written. The report says, per workflow, whether the code
takes the recorded operations, or the first position where it does not (the recorded and the
requested operation, an operation beyond the end of a finished workflow, or one the code no
longer calls). Meant for CI before a deploy: ``assert replay(...).ok``, or ``perdure replay``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from perdure.client.connection import open_existing_store
from perdure.config import Settings, parse_config
from perdure.dbos import DBOS
from perdure.error import DBOSBaseException, DBOSException
from perdure.execution.auth import acting_as, recorded_auth
from perdure.execution.context import enter_workflow, leave_workflow
from perdure.execution.notifier import Notifier
from perdure.execution.pool import WorkerPool
from perdure.execution.workflow import Invocation
from perdure.management.filters import OneOrMany, TimeBound, one_or_many
from perdure.serialization import Payloads
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.store import Store
from perdure.testing.histories import (
    RecordedWorkflow,
    Selection,
    load_histories,
    read_export,
)
from perdure.testing.replay_runtime import (
    Failure,
    NoDatabase,
    ReplayContext,
    ReplayEngine,
    ReplayInterrupt,
    ReplayRuntime,
)
from perdure.testing.verdicts import Divergence, ReplayReport, Stop, WorkflowReplay

__all__ = ["ReplayDivergedError", "replay", "replay_histories"]

DEFAULT_TIMEOUT_SEC = 30.0
# Reading histories from a database: fail at once if unreachable, wait a little if it blips.
READ_WAIT_LIMIT_SEC = 10.0
# Statuses whose record is complete: the code may ask for nothing beyond it.
FINISHED = (S.SUCCESS, S.ERROR)
# Statuses of workflows not started yet: nothing recorded, nothing to check but the function.
NOT_STARTED = (S.ENQUEUED, S.DELAYED)


class ReplayDivergedError(DBOSException):
    """The current code does not take a workflow as recorded, so it was not moved onto it.

    Attributes:
        workflow_id: The workflow.
        result: What its replay found (`WorkflowReplay`: the divergence or the failure).
    """

    def __init__(self, result: WorkflowReplay, *, action: str) -> None:
        self.workflow_id = result.workflow_id
        self.result = result
        found = result.divergence.describe() if result.divergence else result.failure
        super().__init__(
            f"Workflow {result.workflow_id!r} was not {action}: replayed against the current "
            f"code it {result.verdict} ({found}). Fix the code (a DBOS.patch keeps old "
            "workflows on their path), or pass force=True (--force) to move it anyway."
        )


def replay(
    *,
    database_url: str | None = None,
    export_file: str | os.PathLike[str] | None = None,
    histories: Iterable[RecordedWorkflow] | None = None,
    workflow_ids: Sequence[str] | None = None,
    name: OneOrMany = None,
    status: OneOrMany = None,
    since: TimeBound = None,
    limit: int | None = None,
    timeout_sec: float = DEFAULT_TIMEOUT_SEC,
) -> ReplayReport:
    """Replay recorded workflows against the workflows registered in this process.

    Register the current code first (import the modules that define its workflows). The
    histories come from one of ``database_url``, ``export_file`` (written by ``perdure
    workflow export``) or ``histories``; with none, from the configured system database.
    A launched instance in this process keeps running meanwhile: only the replayed
    workflows are served from their records.

    Args:
        database_url: A system database to read histories from (it is only read).
        export_file: A workflow export file to read histories from.
        histories: Histories in hand (`RecordedWorkflow`).
        workflow_ids: Only these workflows.
        name: Only workflows of this function name (or any of these).
        status: Only this status (or any of these), e.g. ``"PENDING"``.
        since: Only workflows created at or after this time (ISO 8601, datetime, epoch ms).
        limit: At most this many workflows, the newest first.
        timeout_sec: How long one workflow's replay may take (a body waiting on something
            its record does not hold fails after this).

    Returns:
        The `ReplayReport`: ``report.ok`` is False if any workflow diverged or failed.

    Raises:
        ValueError: More than one source, or a malformed filter.
        DBOSException: The source cannot be read.

    Example:
        >>> import myapp.workflows  # the current code
        >>> report = replay(database_url="sqlite:///prod-copy.sqlite", status="PENDING")
        >>> assert report.ok, report.describe()
    """
    selection = Selection(
        workflow_ids=one_or_many(workflow_ids, what="workflow_ids"),
        names=one_or_many(name, what="name"),
        statuses=one_or_many(status, what="status"),
        since=since,
        limit=limit,
    )
    recorded = read_histories(
        selection, database_url=database_url, export_file=export_file, histories=histories
    )
    return replay_histories(recorded, timeout_sec=timeout_sec)


def read_histories(
    selection: Selection,
    *,
    database_url: str | None = None,
    export_file: str | os.PathLike[str] | None = None,
    histories: Iterable[RecordedWorkflow] | None = None,
) -> list[RecordedWorkflow]:
    """The histories ``selection`` picks from one source (see `replay`)."""
    given = [x is not None for x in (database_url, export_file, histories)]
    if sum(given) > 1:
        raise ValueError("Give one source of histories: database_url, export_file or histories.")
    if export_file is not None or histories is not None:
        found = read_export(Path(export_file)) if export_file is not None else list(histories or ())
        picked = [h for h in found if selection.matches(h.row)]
        return picked if selection.limit is None else picked[: selection.limit]
    url = database_url or configured_database_url()
    store = open_existing_store(url, wait_limit_sec=READ_WAIT_LIMIT_SEC, connect_wait_sec=0.0)
    try:
        return load_histories(store, selection)
    finally:
        store.close()


def configured_database_url() -> str:
    """The system database of the configured instance (``DBOS(config=...)``).

    Raises:
        DBOSException: None is configured.
    """
    runtime = DBOS._runtime
    if runtime is None:
        raise DBOSException(
            "No system database given: pass database_url= (or export_file=), or configure "
            "DBOS(config=...) so that its system database is read."
        )
    return runtime.settings.system_database_url


def replay_histories(
    histories: Iterable[RecordedWorkflow], *, timeout_sec: float = DEFAULT_TIMEOUT_SEC
) -> ReplayReport:
    """Replay each history against the registered workflows (see `replay`)."""
    with _standing_in() as engine:
        return ReplayReport([_replay_one(engine, h, timeout_sec) for h in histories])


@contextmanager
def _standing_in() -> Iterator[ReplayEngine]:
    """A replay engine, and the facade pointing at a runtime that serves it to replayed
    workflows (and the configured instance, if any, to everyone else) until the end."""
    live = DBOS._runtime
    if isinstance(live, ReplayRuntime):
        raise DBOSException("A replay is already running in this process; run one at a time.")
    settings = live.settings if live is not None else parse_config({"name": "perdure-replay"})
    pool = WorkerPool(1, name="perdure-replay")
    engine = _engine(settings, pool)
    DBOS._runtime = ReplayRuntime(
        engine, live=live, settings=settings, registry=DBOS._registry,
        queues=DBOS._queues, schedules=DBOS._schedules,
    )  # fmt: skip
    try:
        yield engine
    finally:
        DBOS._runtime = live
        pool.stop(0)


def _engine(settings: Settings, pool: WorkerPool) -> ReplayEngine:
    return ReplayEngine(
        store=cast(Store, NoDatabase()),  # replays serve the record: no database at all
        payloads=Payloads(
            settings.serializer, settings.payload_codec, pickle_keys=settings.pickle_signing_keys
        ),
        registry=DBOS._registry,
        pool=pool,
        executor_id="perdure-replay",
        app_version=settings.application_version,
        notifier=Notifier(settings.notification_listener_polling_interval_sec),
    )


@dataclass
class _Body:
    """A replayed workflow's body, run on a thread of its own (an async body on its own
    event loop there); how it ended."""

    ctx: ReplayContext
    call: Invocation
    ended: str | None = None  # "returned", "raised ...", or "stopped"

    def run(self) -> None:
        entered = enter_workflow(self.ctx)
        try:
            with acting_as(self.ctx.auth):
                result = self.call.call()
                if self.call.entry.is_async:
                    asyncio.run(result)
            self.ended = "returned"
        except ReplayInterrupt:
            self.ended = "stopped"
        except (Exception, DBOSBaseException) as exc:  # noqa: BLE001 - the body's outcome, reported
            self.ended = f"raised {type(exc).__name__}: {exc}"
        finally:
            leave_workflow(entered)


def _replay_one(
    engine: ReplayEngine, history: RecordedWorkflow, timeout_sec: float
) -> WorkflowReplay:
    row = history.row
    result = WorkflowReplay(
        workflow_id=row.workflow_id, name=row.name, status=str(row.status),
        app_version=row.app_version, verdict="same",
        recorded_operations=len(history.operations),
    )  # fmt: skip
    try:
        call = engine.invocation_of(row)
    except DBOSException as exc:  # not registered, no such class or instance, unreadable inputs
        return _with(result, verdict="failed", failure=exc.message)
    if row.status in NOT_STARTED and not history.operations:
        stop = Stop(1, "it has not started yet: a live run starts it from the beginning")
        return _with(result, stopped=stop)
    ctx = ReplayContext(
        workflow_id=row.workflow_id, name=row.name, recorded={}, deadline_epoch_ms=None,
        auth=recorded_auth(row), finished=row.status in FINISHED, registry=engine.registry,
        children=history.children,
    )  # fmt: skip
    ctx.replay_from(list(history.operations))
    body = _Body(ctx, call)
    thread = threading.Thread(
        target=body.run, name=f"perdure-replay-{row.workflow_id}", daemon=True
    )
    thread.start()
    thread.join(timeout_sec)
    if thread.is_alive():
        ctx.abandon()  # its next operation stops it; its thread is a daemon
        failure = (
            f"its replay did not end within {timeout_sec:g}s: the body waits on something "
            "its record does not hold"
        )
        return _with(result, verdict="failed", failure=failure, operations=len(ctx.served))
    return _verdict(result, ctx, body)


def _verdict(result: WorkflowReplay, ctx: ReplayContext, body: _Body) -> WorkflowReplay:
    result = _with(result, operations=len(ctx.served), outcome=body.ended or "stopped")
    event = ctx.first_event
    if isinstance(event, Divergence):
        return _with(result, verdict="diverged", divergence=event)
    if isinstance(event, Failure):
        return _with(result, verdict="failed", failure=event.reason)
    if isinstance(event, Stop):
        return _with(result, stopped=event)
    if body.ended is None:
        failure = "its body ended abnormally (an interrupt or interpreter exit)"
        return _with(result, verdict="failed", failure=failure)
    missing = sorted(set(ctx.recorded) - ctx.served)
    if not missing:
        return result
    position = missing[0]
    recorded = ctx.recorded[position]
    expected = ctx.operation(position, recorded.function_name, recorded=recorded)
    divergence = Divergence(position, "missing", expected, None, detail=body.ended)
    return _with(result, verdict="diverged", divergence=divergence)


def _with(result: WorkflowReplay, **changes: Any) -> WorkflowReplay:
    return replace(result, **changes)
