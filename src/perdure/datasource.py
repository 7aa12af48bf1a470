"""``SQLAlchemyDatasource`` and ``AsyncSQLAlchemyDatasource``: DBOS 3.x's way to run
transactions on a database of your own, each exactly once inside a workflow (its checkpoint
committed in the same transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from perdure.dbos import DBOS
from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution import transaction
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import sql_session
from perdure.execution.workflow import WorkflowEngine

F = TypeVar("F", bound=Callable[..., Any])
_UNSUPPORTED = ("engine", "engine_kwargs", "schema", "serializer", "sessionmaker")


def _open(
    database_url: str, run_migrations: bool, unsupported: dict[str, Any], kind: str
) -> ApplicationDatabase:
    """The database of a new datasource, registered for disposal by ``DBOS.destroy``."""
    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        known = [k for k in given if k in _UNSUPPORTED]
        raise DBOSInitializationError(
            f"{kind}.create: Perdure does not support {', '.join(given)}"
            + (" (DBOS options)" if known == given else "")
            + ". Pass only the database URL (and run_migrations)."
        )
    runtime = DBOS._runtime
    if runtime is None:
        raise DBOSInitializationError(
            f"Create the {kind} after DBOS(config=...): it needs the system database to "
            "record its transactions' outcomes."
        )
    database = ApplicationDatabase(database_url, system_url=runtime.settings.system_database_url)
    if run_migrations:
        database.ensure_schema()
    DBOS._datasources.append(database)
    return database


class _Datasource:
    """What both datasources share: the database, its current session, the decorator."""

    _KIND = ""
    _IS_ASYNC = False

    def __init__(self, database: ApplicationDatabase) -> None:
        self._database = database

    def _current_session(self) -> Session | AsyncSession:
        session = sql_session()
        if session is None or not self._database.owns(session):
            raise DBOSException(
                "sql_session() is only available inside a function decorated with this "
                f"{self._KIND}'s @transaction."
            )
        return cast("Session | AsyncSession", session)

    @overload
    def transaction(self, func: F) -> F: ...

    @overload
    def transaction(
        self, func: None = None, *, name: str | None = None, isolation_level: str = ...
    ) -> Callable[[F], F]: ...

    def transaction(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        isolation_level: str = "SERIALIZABLE",
    ) -> F | Callable[[F], F]:
        """Run the function in a transaction on this datasource; exactly once in a workflow.

        Usable bare (``@db.transaction``) or called (``@db.transaction(isolation_level=...)``).
        """
        level = transaction.isolation(isolation_level)
        is_async = self._IS_ASYNC

        def target() -> tuple[WorkflowEngine, ApplicationDatabase]:
            return DBOS._require_runtime().engine, self._database

        def decorate(f: F) -> F:
            run = transaction.transactional(
                f,
                name=name,
                level=level,
                target=target,
                decorator="@datasource.transaction",
                is_async=is_async,
            )
            return cast(F, run)

        return decorate(func) if func is not None else decorate


class SQLAlchemyDatasource(_Datasource):
    """A database transactions run on: ``db = SQLAlchemyDatasource.create(url)``, then
    ``@db.transaction`` on a function that uses ``db.sql_session()``.

    Inside a workflow a transaction commits once: its checkpoint is written in the same
    transaction (in a table ``transaction_outputs`` of schema ``perdure`` of that database, or
    in Perdure's own tables when it is the system database), so a recovery finds it committed
    and never runs it again. Outside a workflow it is a plain transaction.

    Create it after ``DBOS(config=...)``: it uses that instance's system database.
    """

    _KIND = "SQLAlchemyDatasource"

    @staticmethod
    def create(
        database_url: str, *, run_migrations: bool = True, **unsupported: Any
    ) -> SQLAlchemyDatasource:
        """A datasource on ``database_url`` (``sqlite:///...`` or ``postgresql://...``).

        Args:
            database_url: The database the transactions run on.
            run_migrations: Create the checkpoint table if missing (else it must exist).

        Raises:
            DBOSInitializationError: Called before ``DBOS(config=...)``, or with a DBOS option
                Perdure does not support (``engine``, ``engine_kwargs``, ``schema``,
                ``serializer``, ``sessionmaker``): refused rather than silently ignored.
        """
        kind = SQLAlchemyDatasource._KIND
        return SQLAlchemyDatasource(_open(database_url, run_migrations, unsupported, kind))

    def sql_session(self) -> Session:
        """The ``Session`` of the transaction running now on this datasource."""
        return cast(Session, self._current_session())


class AsyncSQLAlchemyDatasource(_Datasource):
    """`SQLAlchemyDatasource` for coroutine functions: ``db = await
    AsyncSQLAlchemyDatasource.create(url)``, then ``@db.transaction`` on an ``async def``
    that awaits ``db.sql_session()``'s ``AsyncSession``. Exactly once in a workflow, the same
    way. PostgreSQL runs on psycopg's async driver, SQLite on aiosqlite.
    """

    _KIND = "AsyncSQLAlchemyDatasource"
    _IS_ASYNC = True

    @staticmethod
    async def create(
        database_url: str, *, run_migrations: bool = True, **unsupported: Any
    ) -> AsyncSQLAlchemyDatasource:
        """An async datasource on ``database_url``; arguments as `SQLAlchemyDatasource.create`."""
        kind = AsyncSQLAlchemyDatasource._KIND
        database = await asyncio.to_thread(_open, database_url, run_migrations, unsupported, kind)
        return AsyncSQLAlchemyDatasource(database)

    def sql_session(self) -> AsyncSession:
        """The ``AsyncSession`` of the transaction running now on this datasource."""
        return cast(AsyncSession, self._current_session())
