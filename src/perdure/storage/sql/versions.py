"""Application versions: registered at launch; the newest timestamp is the latest.

Timestamps are the database's clock, so the clocks of the machines do not decide which
version is the latest. A version registered or promoted gets at least one millisecond more
than every other, so it is the latest even when two writes fall in the same millisecond.
"""

from __future__ import annotations

from perdure.storage.database import Database
from perdure.storage.records import VERSION_COLUMNS, VersionRecord

_COLS = ", ".join(VERSION_COLUMNS)
# The order that puts the latest version first (ties cannot arise from one database's writes
# above, but a deterministic order costs nothing).
LATEST_FIRST = "version_timestamp DESC, created_at DESC, version_name DESC"
# The latest version's name (NULL if none is registered): queue claims embed it.
LATEST_NAME = (
    f"(SELECT version_name FROM {{p}}application_versions ORDER BY {LATEST_FIRST} LIMIT 1)"
)


def _newest_timestamp(excluded: str) -> str:
    """The database's clock, or one millisecond past the newest other timestamp if that is
    later (rows other than ``excluded``, an SQL expression naming the version written)."""
    return (
        "COALESCE((SELECT MAX(version_timestamp) + 1 FROM {p}application_versions "
        f"WHERE version_timestamp >= {{now}} AND version_name <> {excluded}), {{now}})"
    )


REGISTER = (
    f"INSERT INTO {{p}}application_versions ({_COLS}) "
    f"VALUES (?, ?, {_newest_timestamp('?')}, {{now}}) ON CONFLICT (version_name) DO NOTHING"
)
PROMOTE = (
    f"UPDATE {{p}}application_versions SET version_timestamp = {_newest_timestamp('?')} "
    "WHERE version_name = ?"
)
SELECT_VERSIONS = f"SELECT {_COLS} FROM {{p}}application_versions ORDER BY {LATEST_FIRST}"
SELECT_LATEST_VERSIONS = f"{SELECT_VERSIONS} LIMIT ?"


def register_version(db: Database, version_name: str, version_id: str) -> bool:
    """See `Store.register_version`."""
    return db.run(REGISTER, (version_name, version_id, version_name)).changed == 1


def promote_version(db: Database, version_name: str) -> bool:
    """See `Store.promote_version`."""
    return db.run(PROMOTE, (version_name, version_name)).changed == 1


def list_versions(db: Database, limit: int | None) -> list[VersionRecord]:
    """See `Store.list_versions`."""
    if limit is None:
        rows = db.run(SELECT_VERSIONS).rows
    else:
        rows = db.run(SELECT_LATEST_VERSIONS, (limit,)).rows
    return [
        VersionRecord(name, version_id, int(timestamp), int(created))
        for name, version_id, timestamp, created in rows
    ]


# Moving a workflow onto another application version (``perdure workflow move``): a
# compare-and-set on its owner token, which becomes a new one, fencing off any execution of
# the old claim; ``IN (?, ?)`` (the new token too) lets a retry find its own write. One
# waiting on its queue keeps its place there (priority, partition, delay).
MOVE_QUEUED = (
    "UPDATE {p}workflow_status SET app_version = ?, owner_token = ?, updated_at = {now} "
    "WHERE workflow_id = ? AND status = 'ENQUEUED' AND owner_token IN (?, ?)"
)
# One PENDING, CANCELLED or dead-lettered goes on a queue as a plain entry, as a resume from
# a client puts it, for a process of its new version to claim and resume.
MOVE_REQUEUED = (
    "UPDATE {p}workflow_status SET app_version = ?, status = 'ENQUEUED', queue_name = ?, "
    "owner_token = ?, recovery_attempts = 0, workflow_timeout_ms = NULL, "
    "workflow_deadline_epoch_ms = NULL, dequeued_at_epoch_ms = NULL, "
    "not_before_epoch_ms = NULL, deduplication_id = NULL, queue_partition_key = NULL, "
    "priority = 0, completed_at = NULL, updated_at = {now} WHERE workflow_id = ? "
    "AND status IN ('PENDING', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED') "
    "AND owner_token = ?"
)


def move_to_version(
    db: Database,
    workflow_id: str,
    *,
    app_version: str,
    queue_name: str,
    expected_token: int,
    token: int,
) -> bool:
    """See `Store.move_to_version`."""
    queued = (app_version, token, workflow_id, expected_token, token)
    if db.run(MOVE_QUEUED, queued).changed == 1:
        return True
    requeued = (app_version, queue_name, token, workflow_id, expected_token)
    return db.run(MOVE_REQUEUED, requeued).changed == 1
