"""`DBOSClient`'s writes inside the caller's SQLAlchemy transaction: enqueue and send there, so
Perdure's rows commit or roll back with the application's own.

The rows are exactly those `DBOSClient.enqueue`, ``send`` and ``send_bulk`` write, written by
the same store code on the DB-API connection under the caller's ``Connection`` (or
``Session``), which must be on the client's system database (see `perdure.storage.borrowed`).
Nothing is committed here. Who learns of the rows, and when: on PostgreSQL the triggers'
notifications go out when the caller commits (none if it rolls back), waking the workers of
the queue and the receivers of the messages in every process; on SQLite those poll, and see
the rows once committed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from perdure.client.connected import ClientParts
from perdure.client.handles import ClientWorkflowHandle
from perdure.error import DBOSException
from perdure.messaging.operations import Messaging
from perdure.messaging.outgoing import SendMessage
from perdure.queues.enqueue_options import EnqueueOptions
from perdure.serialization import WorkflowSerializationFormat
from perdure.storage.store import Store

# SQLAlchemy dialect -> the backend name Perdure uses, and the drivers whose DB-API
# connections take Perdure's statements as they are (placeholders, types).
_BACKENDS = {"postgresql": "postgres", "sqlite": "sqlite"}
_DRIVERS = frozenset({"psycopg", "pysqlite", "aiosqlite"})
_NEEDED = {"postgres": "postgresql+psycopg", "sqlite": "sqlite (pysqlite or aiosqlite)"}


def _sqlalchemy(conn_or_session: object, where: str) -> sa.Connection | Session:
    """``conn_or_session``, once it is known to be a SQLAlchemy ``Connection`` or ``Session``.

    Raises:
        TypeError: It is neither.
    """
    if isinstance(conn_or_session, (sa.Connection, Session)):
        return conn_or_session
    raise TypeError(
        f"{where} takes a SQLAlchemy Connection or Session on the system database, not "
        f"{type(conn_or_session).__name__!r}. From async code, pass the synchronous "
        "connection run_sync gives: await conn.run_sync(lambda c: client.<call>(c, ...))."
    )


def _dialect_of(target: sa.Connection | Session) -> sa.Dialect:
    return target.get_bind().dialect if isinstance(target, Session) else target.dialect


def _begun(conn_or_session: sa.Connection | Session) -> sa.Connection:
    """The SQLAlchemy connection of ``conn_or_session``, its transaction begun.

    A ``Connection`` not yet in a transaction begins one now, as SQLAlchemy's autobegin does
    at its first statement, so that the caller's ``commit()`` covers Perdure's rows too.
    """
    if isinstance(conn_or_session, Session):
        return conn_or_session.connection()
    if not conn_or_session.in_transaction():
        conn_or_session.begin()
    return conn_or_session


class ClientTransactions(ClientParts):
    """Enqueues and sends of a client inside a transaction its caller commits or rolls back."""

    def _handle(self, workflow_id: str) -> ClientWorkflowHandle[Any]:
        raise NotImplementedError  # `DBOSClient` defines it

    def _enqueue_into(
        self,
        store: Store,
        options: EnqueueOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        where: str,
    ) -> str:
        raise NotImplementedError  # `DBOSClient` defines it

    def _on_caller(self, conn_or_session: object, where: str) -> Store:
        """The client's store over the caller's connection, once it is checked."""
        target = _sqlalchemy(conn_or_session, where)
        dialect = _dialect_of(target)
        expected = "sqlite" if self._store.url.startswith("sqlite") else "postgres"
        if _BACKENDS.get(dialect.name) != expected or dialect.driver not in _DRIVERS:
            raise DBOSException(
                f"{where}: the connection is a {dialect.name}+{dialect.driver} one; on the "
                f"client's system database Perdure needs {_NEEDED[expected]}."
            )
        pooled = _begun(target).connection
        dbapi, driver = pooled.dbapi_connection, pooled.driver_connection
        if dbapi is None or driver is None:
            raise DBOSException(f"{where}: the connection is closed (or was invalidated).")
        return self._store.in_caller_transaction(
            dbapi, in_transaction=lambda: bool(driver.in_transaction)
        )

    def enqueue_in_transaction(
        self,
        conn_or_session: sa.Connection | Session,
        options: EnqueueOptions,
        *args: Any,
        **kwargs: Any,
    ) -> ClientWorkflowHandle[Any]:
        """`enqueue` inside the caller's transaction on the system database.

        ``conn_or_session`` is a SQLAlchemy ``Connection`` or ``Session`` of an engine on the
        client's system database; the caller commits or rolls back. The workflow exists (and
        a worker may start it) only once the transaction commits; the handle is for then.
        The options and errors are `enqueue`'s; a refused enqueue (a taken deduplication ID)
        writes nothing and leaves the transaction usable. Unlike DBOS,
        ``duplication_policy="return-existing"`` is accepted (see
        `perdure.storage.borrowed`: a refused row does not abort the transaction). From
        async code: ``await conn.run_sync(lambda c: client.enqueue_in_transaction(c, ...))``.

        Raises:
            TypeError: Not a SQLAlchemy ``Connection`` or ``Session``.
            DBOSException: A connection not on the client's system database, in autocommit
                mode, or of a driver Perdure cannot use there; and `enqueue`'s errors.
        """
        where = "DBOSClient.enqueue_in_transaction"
        store = self._on_caller(conn_or_session, where)
        return self._handle(self._enqueue_into(store, options, args, kwargs, where=where))

    def send_in_transaction(
        self,
        conn_or_session: sa.Connection | Session,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """`send` inside the caller's transaction on the system database (see
        `enqueue_in_transaction`): the message is received only once it commits.

        A receiver waiting at that moment takes it from the queue (woken by the commit's
        notification, or its next poll on SQLite), rather than being handed it as `send`
        would: a hand-off would hold the receiver's registration until the commit.

        Raises:
            DBOSNonExistentWorkflowError: No workflow ``destination_id`` (nothing written;
                the transaction stays usable).
        """
        store = self._on_caller(conn_or_session, "DBOSClient.send_in_transaction")
        Messaging(store, self._payloads, self._notifier).send(
            destination_id, message, topic, idempotency_key,
            serialization_type=serialization_type, to_forks=send_to_forks, hand_off=False,
        )  # fmt: skip

    def send_bulk_in_transaction(
        self,
        conn_or_session: sa.Connection | Session,
        messages: list[SendMessage],
        *,
        serialization_type: WorkflowSerializationFormat | None = None,
        send_to_forks: bool = False,
    ) -> None:
        """`send_bulk` inside the caller's transaction on the system database (see
        `send_in_transaction`): all the messages are received once it commits, or none.

        Raises:
            DBOSNonExistentWorkflowError: A destination does not exist (nothing written; the
                transaction stays usable).
        """
        store = self._on_caller(conn_or_session, "DBOSClient.send_bulk_in_transaction")
        Messaging(store, self._payloads, self._notifier).send_bulk(
            messages, serialization_type=serialization_type, to_forks=send_to_forks
        )
