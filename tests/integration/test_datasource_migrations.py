"""The checkpoint table of a datasource or an application database, created by a privileged
role (``SQLAlchemyDatasource.migrate``, ``run_dbos_database_migrations(app_database_url=)``)
for an application role that may only use it; and the table's schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from perdure import (
    DBOS,
    AsyncSQLAlchemyDatasource,
    SetWorkflowID,
    SQLAlchemyDatasource,
    run_dbos_database_migrations,
)
from perdure.error import DBOSInitializationError
from perdure.execution.app_database import sqlalchemy_url
from perdure.storage.postgres.connect import psycopg_conninfo
from tests.fixtures.app import make_config
from tests.integration.test_least_privilege import as_role

ON_POSTGRES = pytest.mark.single_backend("postgres", reason="roles and schemas are PostgreSQL's")
ON_SQLITE = pytest.mark.single_backend("sqlite", reason="SQLite's behaviour without schemas, roles")
POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def app_role(db_url: str, other_db_url: str) -> Iterator[tuple[str, str]]:
    """A login role with no rights of its own (name, password); dropped afterwards with
    whatever it was granted in the system and the other database."""
    role = f"perdure_ds_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(psycopg_conninfo(db_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'app-pw'").format(sql.Identifier(role)))
    try:
        yield role, "app-pw"
    finally:
        for url in (db_url, other_db_url):
            with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        with psycopg.connect(psycopg_conninfo(db_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def destroyed(db_url: str, other_db_url: str) -> Iterator[None]:
    """DBOS destroyed (registry too) after the test, before its databases and roles go."""
    yield
    DBOS.destroy(destroy_registry=True)


def _privileges(url: str, role: str, table: str) -> dict[str, bool]:
    """What ``role`` may do on ``table`` (and on its schema) in the database at ``url``."""
    schema = table.rsplit(".", 1)[0]
    checks = {
        "USAGE": "has_schema_privilege(%(role)s, %(schema)s, 'USAGE')",
        "CREATE": "has_schema_privilege(%(role)s, %(schema)s, 'CREATE')",
        **{p: f"has_table_privilege(%(role)s, %(table)s, '{p}')" for p in _TABLE_RIGHTS},
    }
    query = "SELECT " + ", ".join(checks.values())
    params = {"role": role, "schema": schema.strip('"'), "table": table}
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return dict(zip(checks, row, strict=True))


_TABLE_RIGHTS = ("SELECT", "INSERT", "DELETE", "UPDATE", "TRUNCATE")
# What an application role may do after a migration with its name: use the checkpoint table,
# never alter it or create anything next to it.
_USES_ONLY = {
    "USAGE": True,
    "CREATE": False,
    "SELECT": True,
    "INSERT": True,
    "DELETE": True,
    "UPDATE": False,
    "TRUNCATE": False,
}


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _run_once(db: SQLAlchemyDatasource, workflow_id: str) -> list[int]:
    """Run a workflow whose transaction counts its runs, twice under one ID; the runs."""
    runs: list[int] = []

    @db.transaction
    def answer() -> int:
        runs.append(1)
        return int(db.sql_session().execute(sa.text("SELECT 42")).scalar_one())

    @DBOS.workflow()
    def flow() -> int:
        return answer()

    DBOS.launch()
    for _ in range(2):
        with SetWorkflowID(workflow_id):
            assert flow() == 42
    return runs


def test_migrate_creates_the_table_a_datasource_then_only_checks_for(
    destroyed: None, db_url: str, other_db_url: str
) -> None:
    # No DBOS(config=...) needed: the migration creates no datasource.
    SQLAlchemyDatasource.migrate(other_db_url)
    asyncio.run(AsyncSQLAlchemyDatasource.migrate(other_db_url))  # nothing left to create
    DBOS(config=make_config(db_url))
    db = SQLAlchemyDatasource.create(other_db_url, run_migrations=False)
    asyncio.run(AsyncSQLAlchemyDatasource.create(other_db_url, run_migrations=False))
    assert _run_once(db, "migrated-1") == [1]


@ON_POSTGRES
@POSTGRES_ONLY
def test_migrate_grants_the_application_role_what_running_transactions_needs(
    app_role: tuple[str, str], destroyed: None, db_url: str, other_db_url: str
) -> None:
    role, password = app_role
    app_url = as_role(other_db_url, role, password)
    DBOS(config=make_config(db_url))
    with pytest.raises(DBOSInitializationError, match="this role may not create it"):
        SQLAlchemyDatasource.create(app_url, schema="app_checkpoints")

    SQLAlchemyDatasource.migrate(other_db_url, schema="app_checkpoints", application_role=role)
    table = '"app_checkpoints".transaction_outputs'
    assert _privileges(other_db_url, role, table) == _USES_ONLY
    # As the application role: nothing to create any more, with run_migrations or without.
    SQLAlchemyDatasource.create(app_url, schema="app_checkpoints")
    db = SQLAlchemyDatasource.create(app_url, schema="app_checkpoints", run_migrations=False)
    assert _run_once(db, "granted-1") == [1]
    assert _count(other_db_url, table) == 1


@ON_POSTGRES
@POSTGRES_ONLY
def test_the_schema_option_places_the_checkpoint_table(
    destroyed: None, db_url: str, other_db_url: str
) -> None:
    DBOS(config=make_config(db_url))
    db = SQLAlchemyDatasource.create(other_db_url, schema="Shop Checkpoints")
    assert _run_once(db, "schema-1") == [1]
    assert _count(other_db_url, '"Shop Checkpoints".transaction_outputs') == 1
    assert _count(other_db_url, "pg_namespace WHERE nspname = 'perdure'") == 0


@ON_SQLITE
@SQLITE_ONLY
def test_sqlite_has_no_schemas_so_the_option_is_ignored_as_in_dbos(
    destroyed: None, db_url: str, other_db_url: str
) -> None:
    with pytest.raises(DBOSInitializationError, match="SQLite has no roles"):
        SQLAlchemyDatasource.migrate(other_db_url, application_role="app")
    SQLAlchemyDatasource.migrate(other_db_url, schema="shop")
    DBOS(config=make_config(db_url))
    db = SQLAlchemyDatasource.create(other_db_url, schema="shop", run_migrations=False)
    assert _run_once(db, "sqlite-schema-1") == [1]
    assert _count(other_db_url, "perdure_transaction_outputs") == 1


def test_run_dbos_database_migrations_creates_the_application_databases_table(
    destroyed: None, db_url: str, other_db_url: str
) -> None:
    run_dbos_database_migrations(db_url, app_database_url=other_db_url)
    run_dbos_database_migrations(db_url, app_database_url=db_url)  # the system's: nothing more
    DBOS(config=make_config(db_url, application_database_url=other_db_url))
    # The table @DBOS.transaction checkpoints into is the one datasources use by default.
    SQLAlchemyDatasource.create(other_db_url, run_migrations=False)
    runs: list[int] = []

    @DBOS.transaction()
    def answer() -> int:
        runs.append(1)
        return int(DBOS.sql_session.execute(sa.text("SELECT 7")).scalar_one())

    @DBOS.workflow()
    def flow() -> int:
        return answer()

    DBOS.launch()
    for _ in range(2):
        with SetWorkflowID("app-db-1"):
            assert flow() == 7
    assert runs == [1]


@ON_POSTGRES
@POSTGRES_ONLY
def test_run_dbos_database_migrations_grants_the_role_on_the_application_database(
    app_role: tuple[str, str], destroyed: None, db_url: str, other_db_url: str
) -> None:
    role, password = app_role
    run_dbos_database_migrations(db_url, app_database_url=other_db_url, application_role=role)
    assert _privileges(other_db_url, role, "perdure.transaction_outputs") == _USES_ONLY
    # The application runs as the role on both databases.
    config = make_config(
        as_role(db_url, role, password),
        application_database_url=as_role(other_db_url, role, password),
    )
    DBOS(config=config)
    runs: list[int] = []

    @DBOS.transaction()
    def answer() -> int:
        runs.append(1)
        return int(DBOS.sql_session.execute(sa.text("SELECT 7")).scalar_one())

    @DBOS.workflow()
    def flow() -> int:
        return answer()

    DBOS.launch()
    for _ in range(2):
        with SetWorkflowID("app-db-role-1"):
            assert flow() == 7
    assert runs == [1]
    assert _count(other_db_url, "perdure.transaction_outputs") == 1


@ON_SQLITE
@SQLITE_ONLY
def test_a_role_for_a_sqlite_application_database_is_refused_before_migrating(
    destroyed: None, db_url: str, other_db_url: str
) -> None:
    with pytest.raises(DBOSInitializationError, match=r"application database .* is SQLite"):
        run_dbos_database_migrations(db_url, app_database_url=other_db_url, application_role="a")
    assert not Path(db_url.removeprefix("sqlite:///")).exists()  # the system one untouched
