"""Launched processes: heartbeats, what proves them alive, and forgetting the dead.

Times are the database's clock, so clock differences between machines do not matter.
"""

from __future__ import annotations

from perdure.storage.database import Database
from perdure.storage.records import EXECUTOR_COLUMNS, ExecutorRecord

_COLS = ", ".join(EXECUTOR_COLUMNS)

# Insert this process's row or refresh its heartbeat (and its lock key, which a row written
# by an older version lacks, and the workflows it registers, which may grow after launch).
BEAT = (
    f"INSERT INTO {{p}}executors ({_COLS}) VALUES (?, ?, ?, ?, ?, {{now}}, {{now}}, ?, ?) "
    "ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
    "lock_key = excluded.lock_key, workflow_names = excluded.workflow_names"
)
LIST = (
    f"SELECT {_COLS}, {{now}} - heartbeat_at FROM {{p}}executors "
    "ORDER BY heartbeat_at DESC, instance_id"
)
# Owners of PENDING workflows that no heartbeat row vouches for.
OWNERS_WITHOUT_HEARTBEAT = (
    "SELECT DISTINCT instance_id FROM {p}workflow_status w WHERE status = 'PENDING' "
    "AND NOT EXISTS (SELECT 1 FROM {p}executors e WHERE e.instance_id = w.instance_id)"
)
# Still silent (it did not come back meanwhile) and nothing left to take over.
FORGET = (
    "DELETE FROM {p}executors WHERE instance_id = ? AND heartbeat_at < {now} - ? "
    "AND NOT EXISTS (SELECT 1 FROM {p}workflow_status WHERE status = 'PENDING' "
    "AND instance_id = ?)"
)


def beat_params(record: ExecutorRecord) -> tuple[object, ...]:
    """The parameters of `BEAT` for ``record``."""
    return (
        record.instance_id, record.executor_id, record.app_version, record.hostname,
        record.pid, record.lock_key, record.workflow_names,
    )  # fmt: skip


def list_executors(db: Database) -> list[ExecutorRecord]:
    """See `Store.list_executors`."""
    return [
        ExecutorRecord(**dict(zip(EXECUTOR_COLUMNS, r[:-1], strict=True)), silent_ms=int(r[-1]))
        for r in db.run(LIST).rows
    ]


def owners_without_heartbeat(db: Database) -> list[str]:
    """See `Store.owners_without_heartbeat`."""
    return [r[0] for r in db.run(OWNERS_WITHOUT_HEARTBEAT).rows]


def forget_instance(db: Database, instance_id: str, *, silent_for_ms: int) -> bool:
    """See `Store.forget_instance`."""
    return db.run(FORGET, (instance_id, silent_for_ms, instance_id)).changed == 1
