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
