"""``SQLAlchemyDatasource``: DBOS 3.x's way to run transactions on a database of your own,
each exactly once inside a workflow (its checkpoint committed in the same transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from sqlalchemy.orm import Session

from perdure.dbos import DBOS
from perdure.error import DBOSException, DBOSInitializationError
from perdure.execution import transaction
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.context import sql_session
from perdure.execution.workflow import WorkflowEngine

F = TypeVar("F", bound=Callable[..., Any])
_UNSUPPORTED = ("engine", "engine_kwargs", "schema", "serializer", "sessionmaker")


class SQLAlchemyDatasource:
    """A database transactions run on: ``db = SQLAlchemyDatasource.create(url)``, then
    ``@db.transaction`` on a function that uses ``db.sql_session()``.

    Inside a workflow a transaction commits once: its checkpoint is written in the same
    transaction (in a table ``transaction_outputs`` of schema ``perdure`` of that database, or
    in Perdure's own tables when it is the system database), so a recovery finds it committed
    and never runs it again. Outside a workflow it is a plain transaction.

    Create it after ``DBOS(config=...)``: it uses that instance's system database.
    """

    def __init__(self, database: ApplicationDatabase) -> None:
        self._database = database

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
        given = sorted(k for k, v in unsupported.items() if v is not None)
        if given:
            known = [k for k in given if k in _UNSUPPORTED]
            raise DBOSInitializationError(
                f"SQLAlchemyDatasource.create: Perdure does not support {', '.join(given)}"
                + (" (DBOS options)" if known == given else "")
                + ". Pass only the database URL (and run_migrations)."
            )
        runtime = DBOS._runtime
        if runtime is None:
            raise DBOSInitializationError(
                "Create the SQLAlchemyDatasource after DBOS(config=...): it needs the system "
                "database to record its transactions' outcomes."
            )
        database = ApplicationDatabase(
            database_url, system_url=runtime.settings.system_database_url
        )
        if run_migrations:
            database.ensure_schema()
        DBOS._datasources.append(database)
        return SQLAlchemyDatasource(database)

    def sql_session(self) -> Session:
        """The ``Session`` of the transaction running now on this datasource."""
        session = sql_session()
        bind = session.get_bind() if session is not None else None
        if bind is None or getattr(bind, "engine", bind) is not self._database.engine:
            raise DBOSException(
                "sql_session() is only available inside a function decorated with this "
                "datasource's @transaction."
            )
        return cast(Session, session)

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

        def target() -> tuple[WorkflowEngine, ApplicationDatabase]:
            return DBOS._require_runtime().engine, self._database

        def decorate(f: F) -> F:
            run = transaction.transactional(
                f, name=name, level=level, target=target, decorator="@datasource.transaction"
            )
            return cast(F, run)

        return decorate(func) if func is not None else decorate
