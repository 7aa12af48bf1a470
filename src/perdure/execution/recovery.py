"""Resuming PENDING workflows whose execution is gone: claim them under a new owner token and
run them here from their recorded steps.

Their owners are found elsewhere: dead processes (`perdure.execution.takeover`), or executions
of this process that stopped without an outcome (its sweep). Only workflows this process can
run are claimed: registered here, and of this process's application version (or of none).
"""

from __future__ import annotations

from perdure.error import (
    DBOSSerializationError,
    DBOSWorkflowFunctionNotFoundError,
    MaxRecoveryAttemptsExceededError,
)
from perdure.execution.workflow import Invocation, WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.records import (
    WorkflowClaim,
    WorkflowRow,
    WorkflowStatusString,
    new_owner_token,
)

logger = get_logger(__name__)

# The most workflows one claim takes: a bounded statement, and a share for other takers.
CLAIM_BATCH = 100


def claim_of(
    engine: WorkflowEngine,
    *,
    limit: int = CLAIM_BATCH,
    from_instances: tuple[str, ...] = (),
    workflow_id: str | None = None,
    expected_token: int | None = None,
) -> WorkflowClaim:
    """A claim for this process (its executor, instance, registered names and version)."""
    return WorkflowClaim(
        executor_id=engine.executor_id,
        instance_id=engine.instance_id,
        token=new_owner_token(),
        names=engine.registry.workflow_names(),
        app_version=engine.app_version,
        limit=limit,
        from_instances=from_instances,
        workflow_id=workflow_id,
        expected_token=expected_token,
    )


def take_over(
    engine: WorkflowEngine, instances: tuple[str, ...], *, limit: int = CLAIM_BATCH
) -> list[str]:
    """Claim up to ``limit`` PENDING workflows of dead ``instances`` and run them here.

    Returns the IDs of the workflows restarted.
    """
    if not instances:
        return []
    claim = claim_of(engine, limit=limit, from_instances=instances)
    return restart_claimed(engine, engine.store.claim_workflows(claim))


def reclaim(engine: WorkflowEngine, workflow_id: str, expected_token: int) -> list[str]:
    """Claim one PENDING workflow still under ``expected_token`` and run it here."""
    claim = claim_of(engine, limit=1, workflow_id=workflow_id, expected_token=expected_token)
    return restart_claimed(engine, engine.store.claim_workflows(claim))


def runnable(engine: WorkflowEngine, row: WorkflowRow) -> Invocation | None:
    """The call recorded in ``row``, or None (logged) if this process cannot rebuild it."""
    try:
        return engine.invocation_of(row)
    except (DBOSWorkflowFunctionNotFoundError, DBOSSerializationError) as exc:
        logger.error("Cannot recover workflow %s: %s", row.workflow_id, exc)  # noqa: TRY400 - the message is the whole story
        return None


def restart_claimed(engine: WorkflowEngine, rows: list[WorkflowRow]) -> list[str]:
    """Run claimed workflows here; dead-letter those past their recovery attempts.

    A claimed workflow whose call cannot be rebuilt (a configured instance or a class not
    registered, unreadable inputs) is logged and left PENDING here, with its recorded work,
    for the sweep to try again once the code is fixed.
    """
    restarted = []
    for row in rows:
        call = runnable(engine, row)
        if call is None:
            continue
        limit = call.entry.max_recovery_attempts
        if limit is not None and row.recovery_attempts > limit + 1:
            _dead_letter(engine, row, limit)
            continue
        active = engine.resume(row)
        if active is None:
            continue  # already executing here under this claim
        logger.info(
            "Recovering workflow %s (%s), attempt %d",
            row.workflow_id,
            row.name,
            row.recovery_attempts,
        )
        try:
            engine.execute_in_background(active, call)
        except RuntimeError:  # the pool stopped (shutdown): the next owner resumes it
            engine.abandon(active)
            raise
        restarted.append(row.workflow_id)
    return restarted


def _dead_letter(engine: WorkflowEngine, row: WorkflowRow, max_attempts: int) -> None:
    status = WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    if engine.store.finish_workflow(row.workflow_id, row.owner_token, status=status) is None:
        logger.error("%s", MaxRecoveryAttemptsExceededError(row.workflow_id, max_attempts))
