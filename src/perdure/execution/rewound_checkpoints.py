"""Dropping the transaction checkpoints a rewind undoes from the application databases.

A transaction on a database other than the system database commits its checkpoint there too
(see `ApplicationDatabase`), and a resumed workflow looks there for one its crash kept from
reaching the system database. A rewound workflow would find those of its discarded run and
replay them instead of running its transactions again: a rewind deletes them from its cut on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from perdure.error import DBOSException
from perdure.execution.app_database import ApplicationDatabase

# ``{table}``: the database's checkpoint table (a name Perdure chose, never a value).
DROP_FROM = "DELETE FROM {table} WHERE workflow_id = :workflow_id AND function_id >= :start_step"


def drop_checkpoints(
    databases: Iterable[ApplicationDatabase], workflow_id: str, start_step: int
) -> None:
    """Delete the workflow's transaction checkpoints at ``start_step`` and later from each of
    ``databases`` kept apart from the system database (whose checkpoints are steps).

    Raises:
        DBOSException: An asynchronous database, from a thread running an event loop (its
            connections belong to a loop: call the async rewind there).
    """
    apart = [d for d in databases if not d.is_system_database]
    if any(d.asynchronous for d in apart) and _loop_running():
        raise DBOSException(
            f"rewind_workflow({workflow_id!r}) was called from code running an event loop, and "
            "an AsyncSQLAlchemyDatasource's checkpoints are dropped on a loop of their own: "
            "await DBOS.rewind_workflow_async(...) instead. Nothing was changed."
        )
    params = {"workflow_id": workflow_id, "start_step": start_step}
    for database in apart:
        statement = sa.text(DROP_FROM.replace("{table}", database.table.name))
        if database.asynchronous:
            asyncio.run(_drop_async(database, statement, params))
        else:
            with database.engine.begin() as conn:
                conn.execute(statement, params)


async def _drop_async(
    database: ApplicationDatabase, statement: sa.TextClause, params: Mapping[str, Any]
) -> None:
    async with (await database.async_engine()).begin() as conn:
        await conn.execute(statement, params)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
