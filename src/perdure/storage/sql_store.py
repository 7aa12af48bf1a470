"""The complete SQL implementation of `SystemStore`: the query mixins of every domain."""

from __future__ import annotations

from perdure.storage.core_queries import CoreQueries
from perdure.storage.executor_queries import ExecutorQueries
from perdure.storage.management_queries import ManagementQueries
from perdure.storage.messaging_queries import MessagingQueries
from perdure.storage.queue_queries import QueueQueries
from perdure.storage.schedule_queries import ScheduleQueries
from perdure.storage.sql_backend import Params, Rows, Statements

__all__ = ["Params", "Rows", "SqlStore", "Statements"]


class SqlStore(
    QueueQueries,
    CoreQueries,
    MessagingQueries,
    ManagementQueries,
    ScheduleQueries,
    ExecutorQueries,
):
    """All queries, over a backend (SQLite or PostgreSQL) that supplies connections.

    `QueueQueries` comes first: it extends the core inserts with the deduplication check.
    """
