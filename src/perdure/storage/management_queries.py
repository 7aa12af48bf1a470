"""The queries of the management calls, as a mixin of the SQL store."""

from __future__ import annotations

from typing import Any

from perdure.clock import now_ms
from perdure.storage import management_statements as sql
from perdure.storage import statements as core_sql
from perdure.storage.interface import (
    WORKFLOW_COLUMNS,
    QueueCounts,
    WorkflowQuery,
    WorkflowRow,
)
from perdure.storage.sql_backend import SqlBackend, Statements, workflow_params, workflow_row

# Postgres reports a missing table with this SQLSTATE; SQLite only says so in its message.
_UNDEFINED_TABLE = "42P01"


class ManagementQueries(SqlBackend):
    """The `ManagementStore` methods: what operators, the client and the CLI ask for."""

    def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        text, params = self._listing(query)
        rows, _ = self._autocommit(self._q(text), params)
        return [workflow_row(r) for r in rows]

    def _listing(self, query: WorkflowQuery) -> tuple[str, list[Any]]:
        skipped = (sql.INPUT_COLUMNS if not query.with_inputs else frozenset()) | (
            sql.OUTPUT_COLUMNS if not query.with_outputs else frozenset()
        )
        columns = ", ".join("NULL" if c in skipped else c for c in WORKFLOW_COLUMNS)
        conditions: list[str] = []
        params: list[Any] = []

        def any_of(column: str, values: tuple[Any, ...] | None) -> None:
            if values is not None:
                conditions.append(f"{column} IN ({sql.marks(len(values))})" if values else "1 = 0")
                params.extend(values)

        any_of("workflow_id", query.workflow_ids)
        any_of("status", query.statuses)
        any_of("name", query.names)
        any_of("app_version", query.app_versions)
        any_of("authenticated_user", query.users)
        any_of("queue_name", query.queue_names)
        if query.queued_only:
            conditions.append(sql.QUEUED)
        if query.workflow_id_prefix:
            self._prefix_condition(query.workflow_id_prefix, conditions, params)
        if query.created_from_ms is not None:
            conditions.append("created_at >= ?")
            params.append(query.created_from_ms)
        if query.created_to_ms is not None:
            conditions.append("created_at <= ?")
            params.append(query.created_to_ms)
        text = sql.LIST_WORKFLOWS.replace("{columns}", columns)
        if conditions:
            text += " WHERE " + " AND ".join(conditions)
        text += sql.ORDER_NEWEST_FIRST if query.newest_first else sql.ORDER_OLDEST_FIRST
        if query.limit is not None or query.offset:
            text += sql.LIMIT_OFFSET
            params.extend((sql.NO_LIMIT if query.limit is None else query.limit, query.offset or 0))
        return text, params

    def _prefix_condition(self, prefix: str, conditions: list[str], params: list[Any]) -> None:
        if self.backend_name == "postgres":
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(sql.PREFIX_LIKE)
            params.append(escaped + "%")
            return
        # Binary order: the IDs with this prefix are exactly those in [prefix, successor).
        last = ord(prefix[-1])
        if last == 0x10FFFF:  # no successor character: match by the start instead
            conditions.append("substr(workflow_id, 1, ?) = ?")
            params.extend((len(prefix), prefix))
            return
        conditions.append(sql.PREFIX_RANGE)
        params.extend((prefix, prefix[:-1] + chr(last + 1)))

    def queue_counts(self) -> list[QueueCounts]:
        rows, _ = self._autocommit(self._q(sql.QUEUE_COUNTS), ())
        return [QueueCounts(r[0], int(r[1]), int(r[2])) for r in rows]

    def cancel_workflow_tree(self, workflow_id: str) -> list[str] | None:
        rows, _ = self._autocommit(self._q(sql.CANCEL_TREE), (workflow_id, now_ms()))
        if rows:
            return [r[0] for r in rows]
        # Nothing was unfinished: tell "finished" from "unknown" (only on this path).
        found, _ = self._autocommit(self._q(core_sql.SELECT_STATUS), (workflow_id,))
        return [] if found else None

    def resume_workflow(
        self, workflow_id: str, *, executor_id: str, instance_id: str, recovery_attempts: int
    ) -> WorkflowRow | None:
        params = (executor_id, instance_id, recovery_attempts, now_ms(), workflow_id)
        rows, _ = self._autocommit(self._q(sql.RESUME), params)
        return workflow_row(rows[0]) if rows else None

    def requeue_workflow(self, workflow_id: str, *, queue_name: str) -> bool:
        _, changed = self._autocommit(self._q(sql.REQUEUE), (queue_name, now_ms(), workflow_id))
        return changed == 1

    def fork_workflow(self, row: WorkflowRow, *, source_id: str, start_step: int) -> bool:
        def insert(tx: Statements) -> bool:
            _, created = tx.run(self._q(core_sql.INSERT_WORKFLOW), workflow_params(row))
            if created != 1:
                return False
            tx.run(self._q(sql.COPY_STEPS_BEFORE), (row.workflow_id, source_id, start_step))
            return True

        return self._transaction(insert)

    def delete_workflows(self, workflow_ids: tuple[str, ...], *, with_children: bool) -> list[str]:
        if not workflow_ids:
            return []

        def delete(tx: Statements) -> list[str]:
            ids = list(workflow_ids)
            if with_children:
                tree = sql.SELECT_TREE.replace("{seeds}", sql.marks(len(ids)))
                ids = [r[0] for r in tx.run(self._q(tree), ids)[0]]
            return self._delete_rows(tx, ids, sql.DELETE_WORKFLOWS) if ids else []

        return self._transaction(delete)

    def _delete_rows(self, tx: Statements, ids: list[str], statement: str) -> list[str]:
        """Delete the workflows' owned rows, then those ``statement`` deletes of ``ids``."""
        found, _ = tx.run(self._q(statement.replace("{ids}", sql.marks(len(ids)))), ids)
        deleted = [r[0] for r in found]
        if deleted:
            for table, column in sql.WORKFLOW_OWNED_ROWS:
                owned = (
                    sql.DELETE_OWNED_ROWS.replace("{table}", table)
                    .replace("{column}", column)
                    .replace("{ids}", sql.marks(len(deleted)))
                )
                tx.run(self._q(owned), deleted)
        return deleted

    def newest_created_at(self, rank: int) -> int | None:
        rows, _ = self._autocommit(self._q(sql.NEWEST_CREATED_AT), (rank - 1,))
        return int(rows[0][0]) if rows else None

    def delete_finished_batch(self, *, created_before_ms: int, limit: int) -> int:
        def delete(tx: Statements) -> int:
            rows, _ = tx.run(self._q(sql.FINISHED_BEFORE), (created_before_ms, limit))
            ids = [r[0] for r in rows]
            return len(self._delete_rows(tx, ids, sql.DELETE_FINISHED_WORKFLOWS)) if ids else 0

        return self._transaction(delete)

    def schema_version(self) -> int | None:
        try:
            rows, _ = self._autocommit(self._q(sql.SCHEMA_VERSION), ())
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in str(exc):
                return None
            raise
        return int(rows[0][0]) if rows and rows[0][0] is not None else None
