"""Moving a workflow onto the current application version, once a replay shows the current code
takes it as recorded.

A workflow belongs to the application version it started under, and only processes of that
version run it. When no process of that version is left (a stranded workflow, see
`perdure.management.stranded`), it can be moved onto the version deployed now: in place (it
keeps its ID, goes on the internal queue with the new version, and the first live process
of that version resumes it from its recorded steps), or as a fork (a new workflow on the new
version with a copy of its recorded steps; the original is left as it is). Either way its
history is first replayed against the current code, which must be the code of that version:
a divergence refuses the move unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass

from perdure.client.connection import open_existing_store
from perdure.dbos import DBOS
from perdure.error import DBOSException, DBOSNonExistentWorkflowError
from perdure.logs import get_logger
from perdure.management import WorkflowManager
from perdure.queues.dequeue import queue_channel
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from perdure.serialization import JsonSerializer, Payloads
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.records import new_owner_token
from perdure.storage.store import Store
from perdure.testing.histories import load_history
from perdure.testing.replay import (
    DEFAULT_TIMEOUT_SEC,
    READ_WAIT_LIMIT_SEC,
    ReplayDivergedError,
    configured_database_url,
    replay_histories,
)
from perdure.testing.verdicts import WorkflowReplay

logger = get_logger(__name__)

__all__ = ["MoveOutcome", "move_to_version"]


@dataclass(frozen=True)
class MoveOutcome:
    """What `move_to_version` did.

    Attributes:
        workflow_id: The workflow moved.
        from_version: The application version it had.
        to_version: The version it has now (its fork has, with ``fork=True``).
        replay: Its replay against the current code (``replay.can_take``: it took the same
            operations; otherwise the move was forced).
        fork_id: The ID of the fork that carries it on, with ``fork=True``; else None.
    """

    workflow_id: str
    from_version: str
    to_version: str
    replay: WorkflowReplay
    fork_id: str | None = None

    @property
    def forced(self) -> bool:
        """Whether it was moved although its replay diverged or failed."""
        return not self.replay.can_take


def move_to_version(
    workflow_id: str,
    *,
    to_version: str | None = None,
    database_url: str | None = None,
    fork: bool = False,
    force: bool = False,
    timeout_sec: float = DEFAULT_TIMEOUT_SEC,
) -> MoveOutcome:
    """Move an unfinished workflow onto ``to_version``, if the current code replays it.

    The workflows registered in this process are the current code: the code of
    ``to_version``. The workflow's history is replayed against it first; if the replay
    diverges (or cannot run), the move is refused unless ``force``.

    In place (the default) the workflow keeps its ID: PENDING, CANCELLED or dead-lettered,
    it goes on the internal queue, where the first live process of ``to_version`` claims it
    and resumes it from its recorded steps (an execution of the old claim still running
    anywhere is fenced off: it stops at its next step); ENQUEUED, it stays on its queue in
    its place. With ``fork`` a new workflow of ``to_version`` carries it on from a copy of
    its recorded steps, and the original is left as it is (cancel it if need be).

    Args:
        workflow_id: The workflow to move.
        to_version: The version to move it to; by default the configured
            ``application_version``, else the latest registered version.
        database_url: Its system database (default: the configured one).
        fork: Fork it onto the version instead of moving it in place.
        force: Move it even if its replay diverges.
        timeout_sec: How long its replay may take.

    Raises:
        DBOSNonExistentWorkflowError: No workflow has this ID.
        ReplayDivergedError: Its replay diverged or failed, and ``force`` is False.
        DBOSException: It already finished, it changed while being moved (claimed by a
            process meanwhile: look again), or no version to move it to is known.
    """
    url = database_url or configured_database_url()
    store = open_existing_store(url, wait_limit_sec=READ_WAIT_LIMIT_SEC, connect_wait_sec=0.0)
    try:
        return _move(
            store, workflow_id, to_version, fork=fork, force=force, timeout_sec=timeout_sec
        )
    finally:
        store.close()


def _move(
    store: Store,
    workflow_id: str,
    to_version: str | None,
    *,
    fork: bool,
    force: bool,
    timeout_sec: float,
) -> MoveOutcome:
    row = store.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError("target", workflow_id)
    if row.status in (S.SUCCESS, S.ERROR):
        raise DBOSException(
            f"Workflow {workflow_id!r} already finished ({row.status}): there is nothing to "
            "move. Fork it (perdure workflow fork) to run it again."
        )
    target = to_version if to_version is not None else _current_version(store)
    history = load_history(store, row)
    result = replay_histories([history], timeout_sec=timeout_sec).results[0]
    if not result.can_take and not force:
        raise ReplayDivergedError(result, action=f"moved to version {target!r}")
    outcome = MoveOutcome(workflow_id, row.app_version, target, result)
    if fork:
        start = max((s.function_id for s in history.operations), default=0) + 1
        manager = WorkflowManager(store, Payloads(JsonSerializer()))
        forked = manager.fork_workflow(workflow_id, start, application_version=target)
        outcome = MoveOutcome(workflow_id, row.app_version, target, result, fork_id=forked)
    elif not store.move_to_version(
        workflow_id, app_version=target, queue_name=INTERNAL_QUEUE_NAME,
        expected_token=row.owner_token, token=new_owner_token(),
    ):  # fmt: skip
        raise DBOSException(
            f"Workflow {workflow_id!r} changed while being moved (a process claimed it, or it "
            "finished): look at it again (perdure workflow get) before moving it."
        )
    _wake_local_dequeuer()
    logger.warning(
        "Workflow %s moved from version %r to %r%s%s",
        workflow_id,
        row.app_version,
        target,
        f" as fork {outcome.fork_id}" if outcome.fork_id else "",
        " (forced: its replay " + result.verdict + ")" if outcome.forced else "",
    )
    return outcome


def _current_version(store: Store) -> str:
    """The configured ``application_version``, else the latest registered one."""
    runtime = DBOS._runtime
    if runtime is not None and runtime.settings.application_version:
        return runtime.settings.application_version
    latest = store.list_versions(limit=1)
    if not latest:
        raise DBOSException(
            "move_to_version: no application version is registered yet; pass to_version= "
            "(--to-version) naming the version to move the workflow to."
        )
    return latest[0].version_name


def _wake_local_dequeuer() -> None:
    """A launched instance here claims from the internal queue at once (others: by their
    database notification or polling)."""
    runtime = DBOS._runtime
    notifier = getattr(runtime, "notifier", None)
    if notifier is not None:
        notifier.signal(queue_channel(INTERNAL_QUEUE_NAME))
