"""The queries of the durable core: start, checkpoint, complete, recover."""

from __future__ import annotations

from collections.abc import Sequence

from perdure.clock import now_ms
from perdure.storage import statements as sql
from perdure.storage.group_commit import GroupCommit
from perdure.storage.interface import (
    StartOutcome,
    StepRejected,
    StepRow,
    WorkflowRow,
)
from perdure.storage.sql_backend import (
    SqlBackend,
    Statements,
    step_params,
    step_row,
    workflow_params,
    workflow_row,
)


class CoreQueries(SqlBackend):
    """The `SystemStore` methods the workflow engine needs."""

    def __init__(self) -> None:
        super().__init__()
        # Checkpoints of concurrent workflows share commits; an uncontended one goes alone.
        self._group_commit = GroupCommit(self._write_step, self._write_steps)

    def insert_workflow(self, row: WorkflowRow) -> StartOutcome:
        _, count = self._autocommit(self._q(sql.INSERT_WORKFLOW), workflow_params(row))
        if count == 1:
            return StartOutcome(created=True, row=row)
        existing = self.get_workflow(row.workflow_id)
        if existing is None:  # deleted between the two statements: insert again
            return self.insert_workflow(row)
        return StartOutcome(created=False, row=existing)

    def insert_child_workflow(self, row: WorkflowRow, parent_step: StepRow) -> StartOutcome:
        def insert(tx: Statements) -> bool:
            # The link is written only while the parent is PENDING: a parent cancelled by
            # another process starts no more children.
            params = (*step_params(parent_step), parent_step.workflow_id)
            _, recorded = tx.run(self._q(sql.INSERT_STEP_IF_PENDING), params)
            if recorded == 0:
                raise StepRejected("unrecorded")
            _, created = tx.run(self._q(sql.INSERT_WORKFLOW), workflow_params(row))
            return created == 1

        try:
            created = self._transaction(insert)
        except StepRejected:
            raise StepRejected(self.unrecorded_reason(parent_step.workflow_id)) from None
        if created:
            return StartOutcome(created=True, row=row)
        existing = self.get_workflow(row.workflow_id)
        assert existing is not None, "a child workflow row vanished inside its parent's insert"  # noqa: S101
        return StartOutcome(created=False, row=existing)

    def record_step(self, step: StepRow) -> str | None:
        if self._group_commit.record(step):
            return None
        return self.unrecorded_reason(step.workflow_id)

    def _write_step(self, step: StepRow) -> bool:
        params = (*step_params(step), step.workflow_id)
        return self._autocommit(self._q(sql.INSERT_STEP_IF_PENDING), params)[1] == 1

    def _write_steps(self, steps: Sequence[StepRow]) -> list[bool]:
        """Several steps in one transaction (one commit); backends may do it in one statement."""
        statement = self._q(sql.INSERT_STEP_IF_PENDING)

        def write(tx: Statements) -> list[bool]:
            return [
                tx.run(statement, (*step_params(step), step.workflow_id))[1] == 1 for step in steps
            ]

        return self._transaction(write)

    def load_steps(self, workflow_id: str) -> list[StepRow]:
        rows, _ = self._autocommit(self._q(sql.SELECT_STEPS), (workflow_id,))
        return [step_row(r) for r in rows]

    def get_step(self, workflow_id: str, function_id: int) -> StepRow | None:
        rows, _ = self._autocommit(self._q(sql.SELECT_STEP), (workflow_id, function_id))
        return step_row(rows[0]) if rows else None

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        rows, _ = self._autocommit(self._q(sql.SELECT_WORKFLOW), (workflow_id,))
        return workflow_row(rows[0]) if rows else None

    def complete_workflow(
        self, workflow_id: str, *, status: str, output: bytes | None, error: bytes | None
    ) -> bool:
        params = (status, output, error, now_ms(), workflow_id)
        return self._autocommit(self._q(sql.COMPLETE_WORKFLOW), params)[1] == 1

    def set_status(self, workflow_id: str, status: str, *, only_from: tuple[str, ...]) -> bool:
        statement = sql.SET_STATUS + "status IN (" + ", ".join("?" for _ in only_from) + ")"
        params = (status, now_ms(), workflow_id, *only_from)
        return self._autocommit(self._q(statement), params)[1] == 1

    def pending_workflows(self, executor_id: str, instance_id: str) -> list[tuple[str, str]]:
        rows, _ = self._autocommit(self._q(sql.PENDING_OF_EXECUTOR), (executor_id, instance_id))
        return [(r[0], r[1]) for r in rows]

    def claim_for_recovery(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        dead_owner: str,
        max_recovery_attempts: int,
        executor_id: str | None = None,
    ) -> WorkflowRow | None:
        params = (
            instance_id,
            executor_id,
            now_ms(),
            max_recovery_attempts + 1,  # the first execution counts as attempt 1
            workflow_id,
            dead_owner,
        )
        rows, _ = self._autocommit(self._q(sql.CLAIM_FOR_RECOVERY), params)
        return workflow_row(rows[0]) if rows else None

    def add_result_waiter(self, workflow_id: str, waiter_id: str) -> None:
        self._autocommit(self._q(sql.ADD_RESULT_WAITER), (workflow_id, waiter_id))

    def remove_result_waiter(self, workflow_id: str, waiter_id: str) -> None:
        self._autocommit(self._q(sql.REMOVE_RESULT_WAITER), (workflow_id, waiter_id))
