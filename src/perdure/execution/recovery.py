"""Resuming PENDING workflows left by a dead execution: of this executor at launch, or of
another process that stopped heartbeating (`perdure.execution.takeover`)."""

from __future__ import annotations

from perdure.error import (
    DBOSSerializationError,
    DBOSWorkflowFunctionNotFoundError,
    MaxRecoveryAttemptsExceededError,
)
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.interface import WorkflowStatusString

logger = get_logger(__name__)


def recover_pending_workflows(engine: WorkflowEngine) -> list[str]:
    """Claim and restart every PENDING workflow of this executor not owned by this launch.

    A workflow that cannot be rebuilt (unregistered function, unreadable inputs) is logged and
    left PENDING with its recorded work intact, to resume once the code is fixed.
    Returns the IDs of the workflows restarted.
    """
    pending = engine.store.pending_workflows(engine.executor_id, engine.instance_id)
    return restart_workflows(engine, pending)


def restart_workflows(
    engine: WorkflowEngine, pending: list[tuple[str, str]], *, take_over: bool = False
) -> list[str]:
    """Claim each (workflow ID, dead owner) still owned by that owner, and restart it here.

    With ``take_over`` the workflows move to this executor (they belonged to another one).
    Returns the IDs of the workflows restarted.
    """
    restarted = []
    for workflow_id, owner in pending:
        row = engine.store.get_workflow(workflow_id)
        if row is None:
            continue
        try:
            call = engine.invocation_of(row)
        except (DBOSWorkflowFunctionNotFoundError, DBOSSerializationError) as exc:
            if take_over:  # another application's workflow, most likely: its own processes take it
                logger.debug("Not taking over workflow %s here: %s", workflow_id, exc)
            else:
                logger.error("Cannot recover workflow %s: %s", workflow_id, exc)  # noqa: TRY400 - the message is the whole story
            continue
        claimed = engine.store.claim_for_recovery(
            workflow_id,
            engine.instance_id,
            dead_owner=owner,
            max_recovery_attempts=call.entry.max_recovery_attempts,
            executor_id=engine.executor_id if take_over else None,
        )
        if claimed is None:
            continue  # another launch took it first, or it finished
        if claimed.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
            error = MaxRecoveryAttemptsExceededError(workflow_id, call.entry.max_recovery_attempts)
            logger.error("%s", error)
            continue
        active = engine.resume(claimed)
        if active is not None:
            logger.info(
                "Recovering workflow %s (%s), attempt %d",
                workflow_id,
                claimed.name,
                claimed.recovery_attempts,
            )
            engine.execute_in_background(active, call)
            restarted.append(workflow_id)
    return restarted
