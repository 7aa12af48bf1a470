"""Workflows and their steps: start, checkpoint, finish, claim; every write fenced by its token.

A write of an execution names the owner token it holds and changes nothing unless the
workflow is PENDING under that token. When such a write changes nothing, one more read tells
why (only on that path): the position was recorded by this same token (our own write, whose
acknowledgement was lost), the workflow was cancelled, another execution owns it now, or
(rarely) an execution that lost it recorded this very position in the instant before: then
the record stands and the current owner replays it.
"""

from __future__ import annotations

from collections.abc import Sequence

from perdure.error import DBOSQueueDeduplicatedError
from perdure.storage.database import Chain, Database, Part, UniqueViolation
from perdure.storage.records import (
    StartOutcome,
    StepRow,
    Unrecorded,
    WorkflowClaim,
    WorkflowRow,
    WorkflowStatusString,
)
from perdure.storage.sql.rows import (
    STEP_COLS,
    STEP_MARKS,
    WF_COLS,
    WF_MARKS,
    marks,
    step_params,
    step_row,
    workflow_params,
    workflow_row,
)
from perdure.storage.store import WriteRefused

# The execution holding ``owner_token`` may write for the workflow.
OWNED = "workflow_id = ? AND status = 'PENDING' AND owner_token = ?"

INSERT_WORKFLOW = (
    f"INSERT INTO {{p}}workflow_status ({WF_COLS}) VALUES ({WF_MARKS}) "
    "ON CONFLICT (workflow_id) DO NOTHING"
)
SELECT_WORKFLOW = f"SELECT {WF_COLS} FROM {{p}}workflow_status WHERE workflow_id = ?"
# One statement both checkpoints the step and checks ownership (a cancellation or a takeover
# made anywhere is noticed here), without a read before the step.
INSERT_STEP = (
    f"INSERT INTO {{p}}operation_outputs ({STEP_COLS}) SELECT {STEP_MARKS} "
    f"WHERE EXISTS (SELECT 1 FROM {{p}}workflow_status WHERE {OWNED}) "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING"
)
SELECT_STEPS = (
    f"SELECT {STEP_COLS} FROM {{p}}operation_outputs WHERE workflow_id = ? ORDER BY function_id"
)
SELECT_STEP = (
    f"SELECT {STEP_COLS} FROM {{p}}operation_outputs WHERE workflow_id = ? AND function_id = ?"
)
# Why a step was refused: the workflow's status and token, and who recorded the position.
STEP_REFUSAL = (
    "SELECT w.status, w.owner_token, o.owner_token, o.workflow_id FROM {p}workflow_status w "
    "LEFT JOIN {p}operation_outputs o ON o.workflow_id = w.workflow_id AND o.function_id = ? "
    "WHERE w.workflow_id = ?"
)
OWNERSHIP = "SELECT status, owner_token FROM {p}workflow_status WHERE workflow_id = ?"
FINISH = (
    "UPDATE {p}workflow_status SET status = ?, output = ?, error = ?, updated_at = {now}, "
    f"completed_at = {{now}} WHERE {OWNED}"
)

# A child workflow and its parent's step naming it, in one statement (PostgreSQL) or one
# transaction (SQLite). ``prior``: the parent's step was recorded by this same parent
# execution already (a retry after a lost acknowledgement): the child is inserted again, or
# found. The child is inserted only if the parent's step is recorded by its owner.
START_CHILD = Chain(
    "start_child",
    (
        Part(
            "prior",
            "SELECT 1 AS one FROM {p}operation_outputs WHERE workflow_id = ? "
            "AND function_id = ? AND owner_token = ? AND child_workflow_id = ?",
        ),
        Part("link", INSERT_STEP + " RETURNING 1 AS one"),
        Part(
            "child",
            f"INSERT INTO {{p}}workflow_status ({WF_COLS}) SELECT {WF_MARKS} "
            "WHERE EXISTS (SELECT 1 FROM {@link}) OR EXISTS (SELECT 1 FROM {@prior}) "
            "ON CONFLICT (workflow_id) DO NOTHING RETURNING 1 AS one",
        ),
    ),
    "SELECT (SELECT COUNT(*) FROM {@link}) + (SELECT COUNT(*) FROM {@prior}), "
    "(SELECT COUNT(*) FROM {@child})",
)

# Claims. Each sets the claimant's fresh token; ``OR owner_token = ?`` (that same token)
# makes a retried claim find what its lost commit already claimed, without counting an
# attempt twice.
_CLAIM_SET = (
    "SET instance_id = ?, executor_id = ?, owner_token = ?, updated_at = {now}, "
    "recovery_attempts = CASE WHEN owner_token = ? THEN recovery_attempts "
    "ELSE recovery_attempts + 1 END, "
    "app_version = CASE WHEN app_version = '' THEN ? ELSE app_version END"
)
_RUNNABLE = "name IN ({names}) AND app_version IN ('', ?)"
CLAIM_FROM_INSTANCES = (
    "WITH picked AS MATERIALIZED (SELECT workflow_id FROM {p}workflow_status "
    f"WHERE status = 'PENDING' AND instance_id IN ({{owners}}) AND {_RUNNABLE} "
    "ORDER BY created_at LIMIT ? {skip_locked}) "
    f"UPDATE {{p}}workflow_status {_CLAIM_SET} WHERE status = 'PENDING' AND "
    "(workflow_id IN (SELECT workflow_id FROM picked) OR (instance_id = ? AND owner_token = ?)) "
    f"RETURNING {WF_COLS}"
)
CLAIM_ONE = (
    f"UPDATE {{p}}workflow_status {_CLAIM_SET} WHERE workflow_id = ? AND status = 'PENDING' "
    f"AND owner_token IN (?, ?) AND {_RUNNABLE} RETURNING {WF_COLS}"
)

DEDUPLICATION_HOLDER = (
    "SELECT workflow_id FROM {p}workflow_status WHERE queue_name = ? AND deduplication_id = ? "
    "AND status IN ('ENQUEUED', 'PENDING')"
)
ADD_RESULT_WAITER = (
    "INSERT INTO {p}result_waiters (workflow_id, waiter_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
)
REMOVE_RESULT_WAITER = "DELETE FROM {p}result_waiters WHERE workflow_id = ? AND waiter_id = ?"


def start_workflow(
    db: Database, row: WorkflowRow, parent_step: StepRow | None = None
) -> StartOutcome:
    """See `Store.start_workflow`."""
    try:
        if parent_step is None:
            created = db.run(INSERT_WORKFLOW, workflow_params(row)).changed == 1
        else:
            created = _start_child(db, row, parent_step)
    except UniqueViolation as exc:
        # Only the index of unfinished deduplication IDs can refuse a new workflow ID.
        existing = get_workflow(db, row.workflow_id)
        if existing is not None and existing.owner_token == row.owner_token:
            return StartOutcome(created=True, row=existing)  # our own insert, retried
        error = DBOSQueueDeduplicatedError(
            row.workflow_id, row.queue_name or "", row.deduplication_id or ""
        )
        holder = db.run(DEDUPLICATION_HOLDER, (row.queue_name, row.deduplication_id)).rows
        error.holder_workflow_id = holder[0][0] if holder else None
        raise error from exc
    if created:
        return StartOutcome(created=True, row=row)
    existing = get_workflow(db, row.workflow_id)
    if existing is None:  # deleted between the two statements: insert again
        return start_workflow(db, row, parent_step)
    return StartOutcome(created=existing.owner_token == row.owner_token, row=existing)


def _start_child(db: Database, row: WorkflowRow, parent_step: StepRow) -> bool:
    prior = (
        parent_step.workflow_id,
        parent_step.function_id,
        parent_step.owner_token,
        row.workflow_id,
    )
    link = (*step_params(parent_step), parent_step.workflow_id, parent_step.owner_token)
    linked, created = db.chain(
        START_CHILD, {"prior": prior, "link": link, "child": workflow_params(row)}
    ).rows[0]
    if not linked:
        reason = step_refusal(db, parent_step)
        # A position recorded by an earlier owner is not this child's link: start nothing.
        raise WriteRefused(reason or Unrecorded.LOST)
    return bool(created)


def get_workflow(db: Database, workflow_id: str) -> WorkflowRow | None:
    """See `Store.get_workflow`."""
    rows = db.run(SELECT_WORKFLOW, (workflow_id,)).rows
    return workflow_row(rows[0]) if rows else None


def load_steps(db: Database, workflow_id: str, position: int | None = None) -> list[StepRow]:
    """See `Store.load_steps`."""
    if position is None:
        rows = db.run(SELECT_STEPS, (workflow_id,)).rows
    else:
        rows = db.run(SELECT_STEP, (workflow_id, position)).rows
    return [step_row(r) for r in rows]


def insert_step_params(step: StepRow) -> tuple[object, ...]:
    """The parameters of `INSERT_STEP` for ``step`` (fenced by its own owner token)."""
    return (*step_params(step), step.workflow_id, step.owner_token)


def write_step(db: Database, step: StepRow) -> bool:
    """Insert one step checkpoint; True if written."""
    return db.run(INSERT_STEP, insert_step_params(step)).changed == 1


def write_steps(db: Database, steps: Sequence[StepRow]) -> list[bool]:
    """Several checkpoints in one commit; for each, whether it was written."""
    batch = db.dialect.batch_steps
    if batch is not None:  # one statement: the steps travel as one array per column
        columns = [list(values) for values in zip(*(step_params(s) for s in steps), strict=True)]
        written = {(w, f) for w, f in db.run(batch, columns).rows}
        return [(s.workflow_id, s.function_id) in written for s in steps]
    return db.transaction(
        lambda tx: [tx.run(INSERT_STEP, insert_step_params(s)).changed == 1 for s in steps]
    )


def step_refusal(db: Database, step: StepRow) -> str | None:
    """Why ``step`` was not written: None if it was (by this same owner: a retry after a lost
    acknowledgement), `Unrecorded.TAKEN` if the owner still holds the workflow but an earlier
    owner recorded this position, else CANCELLED or LOST."""
    rows = db.run(STEP_REFUSAL, (step.function_id, step.workflow_id)).rows
    if not rows:
        return Unrecorded.LOST  # deleted
    status, token, writer, recorded = rows[0]
    if recorded is not None and writer == step.owner_token:
        return None
    if token != step.owner_token:
        return Unrecorded.LOST
    if status == WorkflowStatusString.CANCELLED:
        return Unrecorded.CANCELLED
    if status == WorkflowStatusString.PENDING and recorded is not None:
        return Unrecorded.TAKEN
    return Unrecorded.LOST


def fence_refusal(db: Database, workflow_id: str, owner_token: int) -> str:
    """Why a write fenced by ``owner_token`` (without a step of its own) was refused."""
    rows = db.run(OWNERSHIP, (workflow_id,)).rows
    if rows and rows[0][1] == owner_token and rows[0][0] == WorkflowStatusString.CANCELLED:
        return Unrecorded.CANCELLED
    return Unrecorded.LOST


def finish_workflow(
    db: Database,
    workflow_id: str,
    owner_token: int,
    *,
    status: str,
    output: bytes | None,
    error: bytes | None,
) -> str | None:
    """See `Store.finish_workflow`."""
    params = (status, output, error, workflow_id, owner_token)
    if db.run(FINISH, params).changed == 1:
        return None
    rows = db.run(OWNERSHIP, (workflow_id,)).rows
    if rows and rows[0][1] == owner_token:
        if rows[0][0] == status:
            return None  # our own write, retried after its acknowledgement was lost
        if rows[0][0] == WorkflowStatusString.CANCELLED:
            return Unrecorded.CANCELLED
    return Unrecorded.LOST


def claim_workflows(db: Database, claim: WorkflowClaim) -> list[WorkflowRow]:
    """See `Store.claim_workflows`."""
    if not claim.names:
        return []
    names = marks(len(claim.names))
    setting = (claim.instance_id, claim.executor_id, claim.token, claim.token, claim.app_version)
    runnable = (*claim.names, claim.app_version)
    if claim.workflow_id is not None:
        statement = CLAIM_ONE.replace("{names}", names)
        params: tuple[object, ...] = (
            *setting, claim.workflow_id, claim.expected_token, claim.token, *runnable,
        )  # fmt: skip
    else:
        owners = claim.from_instances
        statement = CLAIM_FROM_INSTANCES.replace("{owners}", marks(len(owners))).replace(
            "{names}", names
        )
        params = (
            *owners, *runnable, claim.limit, *setting, claim.instance_id, claim.token,
        )  # fmt: skip
    return [workflow_row(r) for r in db.run(statement, params).rows]


def watch_result(db: Database, workflow_id: str, waiter_id: str, *, watching: bool) -> None:
    """See `Store.watch_result`."""
    db.run(ADD_RESULT_WAITER if watching else REMOVE_RESULT_WAITER, (workflow_id, waiter_id))
