"""SQL of the management calls (list, cancel, resume, fork, delete, garbage collection).

Written once with ``?`` parameters and a ``{p}`` table prefix, like `statements`. Listings are
assembled from the fragments below by `ManagementQueries`; only placeholders and column names
are ever joined in, never values.
"""

from __future__ import annotations

from perdure.storage.interface import STEP_COLUMNS, WORKFLOW_COLUMNS

# Statuses a workflow can still move on from; garbage collection never deletes these.
UNFINISHED = "('PENDING', 'ENQUEUED')"

# -- listing ------------------------------------------------------------------------------------

# Payload columns a listing may skip; the others are always read.
INPUT_COLUMNS = frozenset({"inputs"})
OUTPUT_COLUMNS = frozenset({"output", "error"})
LIST_WORKFLOWS = "SELECT {columns} FROM {p}workflow_status"
ORDER_OLDEST_FIRST = " ORDER BY created_at, workflow_id"
ORDER_NEWEST_FIRST = " ORDER BY created_at DESC, workflow_id DESC"
LIMIT_OFFSET = " LIMIT ? OFFSET ?"
# SQLite needs a LIMIT before an OFFSET; a bound this large means "no limit" on both backends.
NO_LIMIT = 2**62

# A workflow-ID prefix, matched so the primary key (SQLite, binary collation) or the
# ``text_pattern_ops`` index (PostgreSQL, whose default collation is not byte order) is used.
PREFIX_RANGE = "workflow_id >= ? AND workflow_id < ?"
PREFIX_LIKE = "workflow_id LIKE ?"

QUEUED = f"queue_name IS NOT NULL AND status IN {UNFINISHED}"
QUEUE_COUNTS = (
    "SELECT queue_name, "
    "SUM(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) "
    f"FROM {{p}}workflow_status WHERE {QUEUED} GROUP BY queue_name ORDER BY queue_name"
)

# -- cancel, resume, fork -------------------------------------------------------------------------

# A workflow and all its descendants. Followed by the statement that uses ``tree``.
_TREE = (
    "WITH RECURSIVE tree (workflow_id) AS ("
    "SELECT workflow_id FROM {p}workflow_status WHERE workflow_id IN ({seeds}) "
    "UNION SELECT w.workflow_id FROM {p}workflow_status w "
    "JOIN tree t ON w.parent_workflow_id = t.workflow_id) "
)
SELECT_TREE = _TREE + "SELECT workflow_id FROM tree"
CANCEL_TREE = (
    _TREE.replace("{seeds}", "?") + "UPDATE {p}workflow_status SET status = 'CANCELLED', "
    "updated_at = ? WHERE workflow_id IN (SELECT workflow_id FROM tree) "
    f"AND status IN {UNFINISHED} RETURNING workflow_id"
)

_WF_COLS = ", ".join(WORKFLOW_COLUMNS)
# A resumed workflow leaves its queue and its deadline (its timeout was for the first run).
RESUME = (
    "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = ?, instance_id = ?, "
    "recovery_attempts = ?, queue_name = NULL, workflow_deadline_epoch_ms = NULL, "
    "updated_at = ? WHERE workflow_id = ? AND status IN "
    "('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'ENQUEUED', 'PENDING') "
    f"RETURNING {_WF_COLS}"
)

# A workflow handed to whichever process claims it from a queue: a plain entry there, with
# its timeout cleared like any resumed workflow's.
REQUEUE = (
    "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = ?, recovery_attempts = 0, "
    "workflow_timeout_ms = NULL, workflow_deadline_epoch_ms = NULL, dequeued_at_epoch_ms = NULL, "
    "not_before_epoch_ms = NULL, deduplication_id = NULL, queue_partition_key = NULL, "
    "priority = 0, updated_at = ? WHERE workflow_id = ? AND status IN "
    "('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'ENQUEUED', 'PENDING')"
)

_COPIED_STEP_COLS = ", ".join(c for c in STEP_COLUMNS if c != "workflow_id")
COPY_STEPS_BEFORE = (
    f"INSERT INTO {{p}}operation_outputs ({', '.join(STEP_COLUMNS)}) "
    f"SELECT ?, {_COPIED_STEP_COLS} FROM {{p}}operation_outputs "
    "WHERE workflow_id = ? AND function_id < ?"
)

# -- delete and garbage collection ----------------------------------------------------------------

# Rows other tables keep per workflow, deleted with it: (table, column naming the workflow).
# What a deleted workflow takes with it: checkpoints, its events, streams, its inbox, and
# registrations of waiters for its result and of its own blocked recv.
WORKFLOW_OWNED_ROWS = (
    ("operation_outputs", "workflow_id"),
    ("workflow_events", "workflow_id"),
    ("streams", "workflow_id"),
    ("notifications", "destination_id"),
    ("result_waiters", "workflow_id"),
    ("recv_waiters", "workflow_id"),
)
DELETE_OWNED_ROWS = "DELETE FROM {p}{table} WHERE {column} IN ({ids})"
_DELETE_WORKFLOWS = "DELETE FROM {p}workflow_status WHERE workflow_id IN ({ids})"
DELETE_WORKFLOWS = _DELETE_WORKFLOWS + " RETURNING workflow_id"
# Re-checks the status at delete time: a workflow resumed meanwhile is kept.
DELETE_FINISHED_WORKFLOWS = (
    _DELETE_WORKFLOWS + f" AND status NOT IN {UNFINISHED} RETURNING workflow_id"
)

NEWEST_CREATED_AT = (
    "SELECT created_at FROM {p}workflow_status ORDER BY created_at DESC LIMIT 1 OFFSET ?"
)
FINISHED_BEFORE = (
    "SELECT workflow_id FROM {p}workflow_status WHERE created_at < ? "
    f"AND status NOT IN {UNFINISHED} ORDER BY created_at LIMIT ?"
)

SCHEMA_VERSION = "SELECT MAX(version) FROM {p}schema_migrations"


def marks(count: int) -> str:
    """``count`` comma-separated ``?`` placeholders."""
    return ", ".join("?" for _ in range(count))
