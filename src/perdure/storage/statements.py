"""SQL shared by both backends, written once with ``?`` parameters and a ``{p}`` table prefix."""

from __future__ import annotations

from perdure.storage.interface import STEP_COLUMNS, WORKFLOW_COLUMNS

_WF_COLS = ", ".join(WORKFLOW_COLUMNS)
_WF_PARAMS = ", ".join("?" for _ in WORKFLOW_COLUMNS)
_STEP_COLS = ", ".join(STEP_COLUMNS)
_STEP_PARAMS = ", ".join("?" for _ in STEP_COLUMNS)

INSERT_WORKFLOW = (
    f"INSERT INTO {{p}}workflow_status ({_WF_COLS}) VALUES ({_WF_PARAMS}) "
    "ON CONFLICT (workflow_id) DO NOTHING"
)
SELECT_WORKFLOW = f"SELECT {_WF_COLS} FROM {{p}}workflow_status WHERE workflow_id = ?"

# A step is written only while its workflow is PENDING: this one statement both checkpoints the
# step and notices a cancellation made by any process, without a read before the step.
INSERT_STEP_IF_PENDING = (
    f"INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) "
    f"SELECT {_STEP_PARAMS} WHERE EXISTS (SELECT 1 FROM {{p}}workflow_status "
    "WHERE workflow_id = ? AND status = 'PENDING') "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING"
)
INSERT_STEP = (
    f"INSERT INTO {{p}}operation_outputs ({_STEP_COLS}) VALUES ({_STEP_PARAMS}) "
    "ON CONFLICT (workflow_id, function_id) DO NOTHING"
)
SELECT_STEPS = (
    f"SELECT {_STEP_COLS} FROM {{p}}operation_outputs WHERE workflow_id = ? ORDER BY function_id"
)
SELECT_STEP = (
    f"SELECT {_STEP_COLS} FROM {{p}}operation_outputs WHERE workflow_id = ? AND function_id = ?"
)
SELECT_STATUS = "SELECT status FROM {p}workflow_status WHERE workflow_id = ?"

COMPLETE_WORKFLOW = (
    "UPDATE {p}workflow_status SET status = ?, output = ?, error = ?, updated_at = ? "
    "WHERE workflow_id = ? AND status = 'PENDING'"
)
# Followed by "status IN (?, ...)" built for the number of allowed source statuses.
SET_STATUS = "UPDATE {p}workflow_status SET status = ?, updated_at = ? WHERE workflow_id = ? AND "

PENDING_OF_EXECUTOR = (
    "SELECT workflow_id, instance_id FROM {p}workflow_status "
    "WHERE status = 'PENDING' AND executor_id = ? AND instance_id <> ? ORDER BY created_at"
)
# Compare-and-set on the owner, so two instances recovering at once never both take a workflow.
CLAIM_FOR_RECOVERY = (
    "UPDATE {p}workflow_status SET instance_id = ?, executor_id = COALESCE(?, executor_id), "
    "recovery_attempts = recovery_attempts + 1, "
    "updated_at = ?, status = CASE WHEN recovery_attempts + 1 > ? "
    "THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE status END "
    "WHERE workflow_id = ? AND status = 'PENDING' AND instance_id = ? "
    f"RETURNING {_WF_COLS}"
)


ADD_RESULT_WAITER = (
    "INSERT INTO {p}result_waiters (workflow_id, waiter_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
)
REMOVE_RESULT_WAITER = "DELETE FROM {p}result_waiters WHERE workflow_id = ? AND waiter_id = ?"


def render(sql: str, *, prefix: str, placeholder: str) -> str:
    """Fill in the table prefix and the driver's placeholder style."""
    return sql.replace("{p}", prefix).replace("?", placeholder)
