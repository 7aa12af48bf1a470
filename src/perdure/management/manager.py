"""`WorkflowManager`: the management calls over a store, shared by `DBOS`, the client and the CLI.

With an engine (a launched process) resumed and forked workflows run here at once. Without
one (`DBOSClient`, the command line) they are put on the internal queue, which every launched
process serves: the first one free claims them and runs them, replaying their recorded steps.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from perdure.clock import now_ms
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSNonExistentWorkflowError,
)
from perdure.execution.handles import WorkflowStatus
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.logs import get_logger
from perdure.management.filters import workflow_query
from perdure.management.records import QueueInfo, RowDecoder, StepInfo
from perdure.queues.queue import INTERNAL_QUEUE_NAME, QueueSpec
from perdure.serialization import Payloads
from perdure.storage.records import ExecutorRecord, WorkflowQuery, WorkflowRow, new_owner_token
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
        """Workflows matching the filters of `perdure.management.filters.workflow_query`."""
        rows = self.store.list_workflows(workflow_query(**filters))
        return [self._decode.status(row) for row in rows]

    def list_queued_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """Workflows waiting on or running from a queue (ENQUEUED, or PENDING with a queue)."""
        return self.list_workflows(queued_only=True, **filters)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """One workflow's status, or None if unknown."""
        row = self.store.get_workflow(workflow_id)
        return self._decode.status(row) if row is not None else None

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, by position (empty if none or unknown)."""
        return [self._decode.step(row) for row in self.store.load_steps(workflow_id)]

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

    def cancel_workflow(self, workflow_id: str) -> None:
        """Cancel a workflow and its unfinished descendants; executions here stop at once.

        Executions in other processes stop when they next record a step (their checkpoint is
        refused because the workflow is no longer PENDING).
        """
        cancelled = self.store.cancel_workflows(workflow_id)
        if cancelled is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        logger.info(
            "Cancelled workflow %s (%d unfinished in its tree)", workflow_id, len(cancelled)
        )
        if self.engine is not None:
            for cancelled_id in {workflow_id, *cancelled}:
                self.engine.cancel_local(cancelled_id)

    def resume_workflow(self, workflow_id: str) -> str:
        """Continue a CANCELLED, dead-lettered, ENQUEUED or interrupted workflow.

        It re-executes from the start, replaying its recorded steps, so finished steps do not
        run again. It gets a new owner token: an execution still running it anywhere is fenced
        off and stops at its next step (the step it is in may then run twice, never a finished
        one). Its deadline is cleared (a timeout applied to the run that was cancelled), its
        queue is left, and its recovery attempts restart. With an engine it runs here;
        without, on the internal queue, in whichever launched process claims it first. A
        workflow that already succeeded or failed is left as it is.
        """
        row = self.store.get_workflow(workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        if row.status in (S.SUCCESS, S.ERROR):
            return workflow_id
        engine = self.engine
        token = new_owner_token()
        if engine is None:
            self.store.requeue_workflow(workflow_id, queue_name=INTERNAL_QUEUE_NAME, token=token)
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

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int,
        *,
        application_version: str | None = None,
        new_workflow_id: str | None = None,
    ) -> str:
        """Start a new workflow that reuses the source's steps before ``start_step``.

        The copy has the same function, inputs, class and configured instance; its steps at
        positions below ``start_step`` are copied (outputs, errors, child workflow IDs), so
        only the steps from ``start_step`` on execute. With an engine it runs here; without,
        it is enqueued on the internal queue. Returns the new workflow's ID.
        """
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"start_step must be a non-negative integer, not {start_step!r}")
        source = self.store.get_workflow(workflow_id)
        if source is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        row = self._forked_row(source, new_workflow_id or str(uuid.uuid4()), application_version)
        call = self.engine.invocation_of(row) if self.engine is not None else None
        if not self.store.fork_workflow(row, source_id=workflow_id, start_step=start_step):
            existing = self.store.get_workflow(row.workflow_id)
            if existing is not None and existing.name != source.name:
                raise DBOSConflictingWorkflowError(
                    row.workflow_id,
                    f"Workflow ID {row.workflow_id!r} already belongs to workflow "
                    f"{existing.name!r}, so it cannot be used for a fork of {source.name!r}.",
                )
            return row.workflow_id  # the fork with this ID exists: IDs are idempotency keys
        logger.info(
            "Forked workflow %s from %s at step %d", row.workflow_id, workflow_id, start_step
        )
        if call is not None:
            self._run_here(row, call)
        return row.workflow_id

    def _forked_row(
        self, source: WorkflowRow, workflow_id: str, application_version: str | None
    ) -> WorkflowRow:
        now = now_ms()
        engine = self.engine
        timeout = source.workflow_timeout_ms
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
        )
        if engine is None:  # the claim starts its timeout
            return replace(
                fork, status=S.ENQUEUED, queue_name=INTERNAL_QUEUE_NAME, instance_id="",
                recovery_attempts=0, workflow_deadline_epoch_ms=None,
                owner_token=new_owner_token(),
            )  # fmt: skip
        return replace(
            fork, status=S.PENDING, queue_name=None, executor_id=engine.executor_id,
            instance_id=engine.instance_id, recovery_attempts=1,
            workflow_deadline_epoch_ms=now + timeout if timeout else None,
            owner_token=new_owner_token(),
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
