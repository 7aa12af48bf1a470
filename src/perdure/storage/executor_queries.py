"""The queries of executor heartbeats and takeover, as a mixin of the SQL store."""

from __future__ import annotations

from perdure.storage.interface import EXECUTOR_COLUMNS, ExecutorRecord
from perdure.storage.sql_backend import SqlBackend

_COLS = ", ".join(EXECUTOR_COLUMNS)
# The database's clock in epoch milliseconds: every heartbeat and every staleness check uses
# it, so clock differences between the machines that run Perdure do not matter.
_NOW = {
    "postgres": "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
}

BEAT = (
    f"INSERT INTO {{p}}executors ({_COLS}) VALUES (?, ?, ?, ?, ?, {{now}}, {{now}}) "
    "ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
)
DEAD = (
    "SELECT instance_id FROM {p}executors WHERE heartbeat_at < {now} - ? AND instance_id <> ? "
    "ORDER BY heartbeat_at"
)
PENDING_OF_INSTANCE = (
    "SELECT workflow_id, instance_id FROM {p}workflow_status "
    "WHERE status = 'PENDING' AND instance_id = ? ORDER BY created_at"
)
# Still silent (it did not come back meanwhile) and nothing left to take over.
FORGET = (
    "DELETE FROM {p}executors WHERE instance_id = ? AND heartbeat_at < {now} - ? "
    "AND NOT EXISTS (SELECT 1 FROM {p}workflow_status WHERE status = 'PENDING' "
    "AND instance_id = ?)"
)
LIST = f"SELECT {_COLS} FROM {{p}}executors ORDER BY heartbeat_at DESC, instance_id"


class ExecutorQueries(SqlBackend):
    """The `ExecutorStore` methods."""

    def _timed(self, statement: str) -> str:
        return self._q(statement.replace("{now}", _NOW[self.backend_name]))

    def beat(self, record: ExecutorRecord) -> None:
        params = (
            record.instance_id, record.executor_id, record.app_version, record.hostname,
            record.pid,
        )  # fmt: skip
        self._autocommit(self._timed(BEAT), params)

    def dead_instances(self, *, silent_for_ms: int, exclude: str) -> list[str]:
        rows, _ = self._autocommit(self._timed(DEAD), (silent_for_ms, exclude))
        return [r[0] for r in rows]

    def pending_of_instance(self, instance_id: str) -> list[tuple[str, str]]:
        rows, _ = self._autocommit(self._q(PENDING_OF_INSTANCE), (instance_id,))
        return [(r[0], r[1]) for r in rows]

    def forget_instance(self, instance_id: str, *, silent_for_ms: int) -> bool:
        params = (instance_id, silent_for_ms, instance_id)
        return self._autocommit(self._timed(FORGET), params)[1] == 1

    def list_executors(self) -> list[ExecutorRecord]:
        rows, _ = self._autocommit(self._q(LIST), ())
        return [ExecutorRecord(*r) for r in rows]
