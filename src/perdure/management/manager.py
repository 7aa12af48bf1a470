"""`WorkflowManager`: the management calls over a store, shared by `DBOS`, the client and the CLI.

With an engine (a launched process) resumed and forked workflows run here at once. Without
one (`DBOSClient`, the command line) they are put on the internal queue, which every launched
process serves: the first one free claims them and runs them, replaying their recorded steps.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from perdure.clock import now_ms
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.handles import WorkflowStatus
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.logs import get_logger
from perdure.management.filters import (
    non_negative,
    one_or_many,
    queued_workflow_query,
    workflow_query,
)
from perdure.management.records import QueueInfo, RowDecoder, StepInfo
from perdure.queues.dequeue import queue_channel
from perdure.queues.queue import INTERNAL_QUEUE_NAME, QueueSpec
from perdure.serialization import Payloads
from perdure.storage.records import (
    TERMINAL_STATUSES,
    ExecutorRecord,
    QueuePlacement,
    WorkflowQuery,
    WorkflowRow,
    new_owner_token,
)
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.store import Store

logger = get_logger(__name__)

# Garbage collection deletes at most this many workflows per transaction: no long locks.
GC_BATCH_SIZE = 1000
# How long resume waits for a cancelled execution in this process to reach its next step.
LOCAL_STOP_TIMEOUT_SEC = 10.0


class WorkflowManager:
    """List, inspect and steer workflows stored in one system database.

    Args:
        store: The system store.
        payloads: Decodes stored inputs, outputs and errors.
        engine: The launched engine, to run resumed and forked workflows in this process and
            to signal cancellations to executions here; None in clients.
        lenient: Show undecodable payloads as `Unreadable` text instead of raising (CLI).
    """

    def __init__(
        self,
        store: Store,
        payloads: Payloads,
        *,
        engine: WorkflowEngine | None = None,
        lenient: bool = False,
    ) -> None:
        self.store = store
        self.engine = engine
        self._decode = RowDecoder(payloads, lenient=lenient)

    # -- reading ---------------------------------------------------------------------------------

    def list_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """Workflows matching the filters of `perdure.management.filters.workflow_query`.

        A payload that cannot be decoded here is logged and listed as stored.
        """
        return self._statuses(workflow_query(**filters))

    def list_queued_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """Workflows on a queue; unless ``status`` is given, those waiting or running
        (ENQUEUED, DELAYED, PENDING)."""
        return self._statuses(queued_workflow_query(**filters))

    def _statuses(self, query: WorkflowQuery) -> list[WorkflowStatus]:
        rows = self.store.list_workflows(query)
        return [self._decode.status(row, listing=True) for row in rows]

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """One workflow's status, or None if unknown."""
        row = self.store.get_workflow(workflow_id)
        return self._decode.status(row) if row is not None else None

    def list_workflow_steps(
        self,
        workflow_id: str,
        *,
        load_output: bool = True,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[StepInfo]:
        """The recorded steps of a workflow, by position (empty if none or unknown).

        ``load_output`` False leaves outputs and errors None without reading them;
        ``limit`` / ``offset`` page. An output that cannot be decoded here is logged and
        listed as stored.
        """
        rows = self.store.list_steps(
            workflow_id,
            with_outputs=load_output,
            limit=non_negative(limit, what="limit"),
            offset=non_negative(offset, what="offset"),
        )
        return [self._decode.step(row, listing=True) for row in rows]

    def list_queues(self) -> list[QueueInfo]:
        """Every defined queue and every queue with unfinished workflows, by name."""
        counts = {c.queue_name: c for c in self.store.queue_counts()}
        definitions = {d.name: QueueSpec.from_record(d) for d in self.store.list_queues()}
        return [
            QueueInfo(
                name=name,
                enqueued=counts[name].enqueued if name in counts else 0,
                running=counts[name].pending if name in counts else 0,
                definition=definitions.get(name),
            )
            for name in sorted(counts.keys() | definitions.keys())
        ]

    def list_executors(self) -> list[ExecutorRecord]:
        """The launched processes recorded by their heartbeats, most recent first."""
        return self.store.list_executors()

    # -- steering --------------------------------------------------------------------------------

    def cancel_workflows(
        self, workflow_ids: Sequence[str], *, cancel_children: bool = False
    ) -> list[str]:
        """Cancel workflows that have no outcome yet (PENDING, ENQUEUED, DELAYED or
        dead-lettered), and with ``cancel_children`` their unfinished descendants too.

        Unknown, finished and already cancelled workflows are left alone, as in DBOS.
        Executions here stop at once; in other processes they stop when they next record a
        step (their checkpoint is refused because the workflow is no longer PENDING).
        Returns the IDs cancelled.
        """
        ids = tuple(dict.fromkeys(one_or_many(workflow_ids, what="workflow_ids") or ()))
        cancelled = self.store.cancel_workflows(ids, with_children=cancel_children)
        logger.info(
            "Cancelled %d workflow(s) of %s%s",
            len(cancelled),
            ", ".join(ids),
            " and their children" if cancel_children else "",
        )
        if self.engine is not None:
            for cancelled_id in cancelled:
                self.engine.cancel_local(cancelled_id)
        return cancelled

    def resume_workflow(self, workflow_id: str, *, queue_name: str | None = None) -> str:
        """Continue a CANCELLED, dead-lettered, ENQUEUED or interrupted workflow.

        It re-executes from the start, replaying its recorded steps, so finished steps do not
        run again. It gets a new owner token: an execution still running it anywhere is fenced
        off and stops at its next step (the step it is in may then run twice, never a finished
        one). Its deadline is cleared (a timeout applied to the run that was cancelled), its
        queue is left, and its recovery attempts restart. With ``queue_name`` it is enqueued
        there (a plain entry: no priority, partition or delay); otherwise with an engine it
        runs here, and without one on the internal queue, in whichever launched process
        claims it first. A workflow that already succeeded or failed is left as it is.

        Raises:
            DBOSNonExistentWorkflowError: No workflow has this ID.
        """
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError("target", workflow_id)
        if row.status in (S.SUCCESS, S.ERROR):
            return workflow_id
        engine = self.engine
        token = new_owner_token()
        if engine is None or queue_name is not None:
            target = INTERNAL_QUEUE_NAME if queue_name is None else queue_name
            self.store.requeue_workflow(workflow_id, queue_name=target, token=token)
            if engine is not None:  # other processes: a PostgreSQL trigger, or their polling
                engine.notifier.signal(queue_channel(target))
            return workflow_id
        if row.status == S.PENDING and engine.is_active(workflow_id):
            return workflow_id  # running here already
        call = engine.invocation_of(row)  # an unregistered workflow fails before any change
        # A cancelled execution here stops at its next step; waiting for it spares its
        # current step a second run. Past the wait the new claim fences it off anyway.
        if not engine.wait_inactive(workflow_id, LOCAL_STOP_TIMEOUT_SEC):
            logger.warning(
                "Workflow %s: its cancelled execution here is still in a step after %.0fs; "
                "resuming anyway (that execution stops at its next step)",
                workflow_id,
                LOCAL_STOP_TIMEOUT_SEC,
            )
        claimed = self.store.resume_workflow(
            workflow_id, executor_id=engine.executor_id, instance_id=engine.instance_id,
            token=token,
        )  # fmt: skip
        if claimed is not None:
            self._run_here(claimed, call)
        return workflow_id

    def set_workflow_delay(
        self,
        workflow_id: str,
        *,
        delay_seconds: float | None = None,
        delay_until_epoch_ms: int | None = None,
    ) -> None:
        """Change when a workflow waiting on its queue (ENQUEUED or DELAYED) may start.

        Exactly one of ``delay_seconds`` (from now) and ``delay_until_epoch_ms`` (a time).
        A workflow not waiting on a queue, or unknown, is left alone, as in DBOS.

        Raises:
            DBOSException: Neither or both given, or a negative value.
        """
        not_before = _start_time(delay_seconds, delay_until_epoch_ms)
        queue_name = self.store.delay_workflow(workflow_id, not_before_epoch_ms=not_before)
        if queue_name is None:
            return
        logger.info("Workflow %s may start from %d (epoch ms)", workflow_id, not_before)
        if self.engine is not None:  # other processes: a PostgreSQL trigger, or their polling
            self.engine.notifier.signal(queue_channel(queue_name))

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        new_workflow_id: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        timeout_seconds: float | None = None,
        replacement_children: Mapping[str, str] | None = None,
    ) -> str:
        """Start a new workflow that reuses the source's steps before ``start_step``.

        The copy has the same function, inputs, class and configured instance; its steps at
        positions below ``start_step`` are copied (outputs, errors, child workflow IDs, each
        child in ``replacement_children`` replaced by the ID it maps to), so only the steps
        from ``start_step`` on execute, and the source is marked ``was_forked_from``. With
        ``queue_name`` it is enqueued there (in ``queue_partition_key``'s partition);
        otherwise with an engine it runs here, and without one on the internal queue. Its
        timeout is ``timeout_seconds``, or else the source's. Returns the new workflow's ID.
        """
        if isinstance(start_step, bool) or not isinstance(start_step, int):
            raise TypeError(f"start_step must be an integer step ID, not {start_step!r}")
        start_step = max(start_step, 0)  # below the first step: from the start, as in DBOS
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, not {timeout_seconds!r}")
        if queue_partition_key is not None and queue_name is None:
            raise ValueError("fork_workflow: queue_partition_key needs a queue_name to apply to.")
        replacements = _replacements(replacement_children)
        source = self.store.get_workflow(workflow_id)
        if source is None:
            raise DBOSNonExistentWorkflowError("target", workflow_id)
        row = self._forked_row(
            source, new_workflow_id or str(uuid.uuid4()), application_version,
            placement=QueuePlacement(queue_name, partition_key=queue_partition_key)
            if queue_name is not None else None,
            timeout_ms=round(timeout_seconds * 1000) if timeout_seconds is not None else None,
        )  # fmt: skip
        here = self.engine is not None and queue_name is None
        call = self.engine.invocation_of(row) if self.engine is not None and here else None
        forked = self.store.fork_workflow(
            row, source_id=workflow_id, start_step=start_step, replacement_children=replacements
        )
        if not forked:
            existing = self.store.get_workflow(row.workflow_id)
            if existing is not None and existing.name != source.name:
                raise DBOSConflictingWorkflowError(
                    row.workflow_id,
                    "Workflow already exists with a different function name: workflow ID "
                    f"{row.workflow_id!r} belongs to {existing.name!r}, so it cannot be used "
                    f"for a fork of {source.name!r}.",
                )
            return row.workflow_id  # the fork with this ID exists: IDs are idempotency keys
        logger.info(
            "Forked workflow %s from %s at step %d", row.workflow_id, workflow_id, start_step
        )
        if call is not None:
            self._run_here(row, call)
        elif self.engine is not None and row.queue_name is not None:
            self.engine.notifier.signal(queue_channel(row.queue_name))
        return row.workflow_id

    def rewind_workflow(
        self,
        workflow_id: str,
        *,
        start_step: int = 1,
        application_version: str | None = None,
        queue_name: str | None = None,
        queue_partition_key: str | None = None,
        shard_key: str | None = None,
        drop_checkpoints: Callable[[], None] | None = None,
    ) -> str:
        """Rerun a finished workflow from ``start_step`` under its own ID.

        Its operations at positions ``start_step`` and later are undone (see
        `Store.rewind_workflow`), and it is enqueued on ``queue_name`` (in
        ``queue_partition_key``'s partition), else on the internal queue: the process that
        claims it replays the steps before the cut and runs the rest again. With
        ``application_version`` only a process of that version claims it.
        ``drop_checkpoints`` deletes transaction checkpoints kept outside the system database
        from the cut on; it runs once the workflow is found finished, before the rewind (a
        rewind that then fails leaves the workflow finished, and can be retried).

        Raises:
            ValueError: ``start_step`` below 1, or a partition key without a queue.
            DBOSNonExistentWorkflowError: No workflow has this ID.
            DBOSException: The workflow is not finished (cancel it first), or a
                ``shard_key`` was given.
        """
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 1:
            raise ValueError(f"start_step must be an integer >= 1, not {start_step!r}")
        if queue_partition_key is not None and queue_name is None:
            raise ValueError("rewind_workflow: queue_partition_key needs a queue_name to apply to.")
        if shard_key is not None:
            raise DBOSException(
                f"rewind_workflow({workflow_id!r}, shard_key={shard_key!r}): Perdure has no "
                "shards (a DBOS Enterprise feature; one system database holds every "
                "workflow). Remove shard_key."
            )
        # Checked here first, so nothing is touched for a workflow that is running; the
        # rewind itself checks again, in its transaction.
        row = self.store.get_workflow(workflow_id)
        _check_rewindable(workflow_id, row.status if row is not None else None)
        engine = self.engine
        # A cancelled execution here stops at its next step; waiting for it spares that step
        # a second run (and keeps it from committing a checkpoint after they are dropped).
        # Past the wait the rewind's new token fences it off anyway.
        if engine is not None and not engine.wait_inactive(workflow_id, LOCAL_STOP_TIMEOUT_SEC):
            logger.warning(
                "Workflow %s: its cancelled execution here is still in a step after %.0fs; "
                "rewinding anyway (that execution stops at its next step)",
                workflow_id,
                LOCAL_STOP_TIMEOUT_SEC,
            )
        if drop_checkpoints is not None:
            drop_checkpoints()
        target = INTERNAL_QUEUE_NAME if queue_name is None else queue_name
        outcome = self.store.rewind_workflow(
            workflow_id, start_step=start_step, queue_name=target,
            partition_key=queue_partition_key, app_version=application_version,
            token=new_owner_token(),
        )  # fmt: skip
        if not outcome.rewound:
            _check_rewindable(workflow_id, outcome.status)
            raise DBOSException(  # finished when read, then changed before its update
                f"Workflow {workflow_id} changed status while being rewound; rewind it again."
            )
        logger.info(
            "Rewound workflow %s to step %d; enqueued on %s", workflow_id, start_step, target
        )
        if engine is not None:  # other processes: a PostgreSQL trigger, or their polling
            engine.notifier.signal(queue_channel(target))
        return workflow_id

    def _forked_row(
        self,
        source: WorkflowRow,
        workflow_id: str,
        application_version: str | None,
        *,
        placement: QueuePlacement | None,
        timeout_ms: int | None,
    ) -> WorkflowRow:
        now = now_ms()
        engine = self.engine
        timeout = source.workflow_timeout_ms if timeout_ms is None else timeout_ms
        fork = replace(
            source,
            workflow_id=workflow_id,
            output=None,
            error=None,
            app_version=source.app_version if application_version is None else application_version,
            created_at=now,
            updated_at=now,
            parent_workflow_id=None,
            forked_from=source.workflow_id,
            deduplication_id=None,
            priority=0,
            queue_partition_key=None,
            not_before_epoch_ms=None,
            dequeued_at_epoch_ms=None,
            completed_at=None,
            was_forked_from=False,
            schedule_name=None,
            workflow_timeout_ms=timeout,
            owner_token=new_owner_token(),
        )
        if engine is None or placement is not None:  # the claim starts its timeout
            placement = placement or QueuePlacement(INTERNAL_QUEUE_NAME)
            return replace(
                placement.place(fork), instance_id="", recovery_attempts=0,
                workflow_deadline_epoch_ms=None,
            )  # fmt: skip
        return replace(
            fork, status=S.PENDING, queue_name=None, executor_id=engine.executor_id,
            instance_id=engine.instance_id, recovery_attempts=1,
            workflow_deadline_epoch_ms=now + timeout if timeout else None,
        )  # fmt: skip

    def _run_here(self, row: WorkflowRow, call: Invocation) -> None:
        engine = self.engine
        assert engine is not None  # noqa: S101 - only called with an engine
        active = engine.resume(row)
        if active is not None:
            engine.execute_in_background(active, call)

    # -- deleting --------------------------------------------------------------------------------

    def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow's records (and its descendants' if asked); unknown IDs are ignored."""
        deleted = self.store.delete_workflows((workflow_id,), with_children=delete_children)
        logger.info("Deleted %d workflow(s) starting at %s", len(deleted), workflow_id)

    def garbage_collect(
        self, cutoff_epoch_ms: int | None = None, rows_threshold: int | None = None
    ) -> int:
        """Delete finished workflows created before a time and/or beyond the newest N.

        PENDING and ENQUEUED workflows are always kept. Deletes in batches of
        `GC_BATCH_SIZE`, one short transaction each. Returns the number deleted.
        """
        cutoffs = []
        if cutoff_epoch_ms is not None:
            cutoffs.append(int(cutoff_epoch_ms))
        if rows_threshold is not None:
            if isinstance(rows_threshold, bool) or rows_threshold < 1:
                raise ValueError(
                    f"rows_threshold must be a positive integer, not {rows_threshold!r}"
                )
            query = WorkflowQuery(
                newest_first=True, limit=1, offset=rows_threshold - 1,
                with_inputs=False, with_outputs=False,
            )  # fmt: skip
            nth_newest = self.store.list_workflows(query)
            if nth_newest:
                cutoffs.append(nth_newest[0].created_at)
        if not cutoffs:
            return 0
        cutoff, total = max(cutoffs), 0
        while True:
            deleted = self.store.delete_finished_batch(
                created_before_ms=cutoff, limit=GC_BATCH_SIZE
            )
            total += deleted
            if deleted < GC_BATCH_SIZE:
                logger.info("Garbage collection deleted %d workflow(s)", total)
                return total


def _check_rewindable(workflow_id: str, status: str | None) -> None:
    """Raise unless a workflow of ``status`` (None: unknown) may be rewound."""
    if status is None:
        raise DBOSNonExistentWorkflowError("target", workflow_id)
    if status not in TERMINAL_STATUSES:
        raise DBOSException(
            f"Cannot rewind workflow {workflow_id}: it is {status}, and only a finished "
            "workflow (SUCCESS, ERROR, CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED) can be "
            "rewound. Cancel it first (cancel_workflow), then rewind it."
        )


def _replacements(children: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not children:
        return ()
    pairs = tuple(children.items())
    for old, new in pairs:
        if not isinstance(old, str) or not isinstance(new, str):
            raise TypeError(
                f"replacement_children maps child workflow IDs to IDs, not {old!r}: {new!r}"
            )
    return pairs


def _start_time(delay_seconds: float | None, delay_until_epoch_ms: int | None) -> int:
    """When a delayed workflow may start, from exactly one of the two ways to say it."""
    if (delay_seconds is None) == (delay_until_epoch_ms is None):
        raise DBOSException(
            "set_workflow_delay needs exactly one of delay_seconds (from now) and "
            "delay_until_epoch_ms (a time), e.g. set_workflow_delay(wid, delay_seconds=60)."
        )
    if delay_until_epoch_ms is not None:
        if delay_until_epoch_ms < 0:
            raise DBOSException(f"delay_until_epoch_ms must be >= 0, not {delay_until_epoch_ms}")
        return int(delay_until_epoch_ms)
    assert delay_seconds is not None  # noqa: S101 - exactly one is set (checked above)
    if not delay_seconds >= 0:
        raise DBOSException(f"delay_seconds must be >= 0, not {delay_seconds}")
    return now_ms() + math.ceil(delay_seconds * 1000)
