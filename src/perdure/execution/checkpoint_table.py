"""The checkpoint table of an application database: where it lives, its creation by the role
that owns the schema, and the rights an application role needs on it.

A transaction on a database other than the system database commits its checkpoint into this
table, in the same transaction as the user's writes. On PostgreSQL it is
``<schema>.transaction_outputs`` (schema ``perdure`` unless a datasource chose another); SQLite
has no schemas, so there it is the table ``perdure_transaction_outputs`` whatever the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from perdure.error import DBOSInitializationError
from perdure.storage.urls import redact_url

DEFAULT_SCHEMA = "perdure"
_PG_TABLE = "transaction_outputs"
_SQLITE_TABLE = "perdure_transaction_outputs"
# Serialises concurrent creators of a checkpoint table (any schema) on one PostgreSQL server.
_CREATE_LOCK_KEY = 7070657264757265
# PostgreSQL SQLSTATE insufficient_privilege: the role may not create the schema or the table.
_INSUFFICIENT_PRIVILEGE = "42501"

_PG_EXISTS = sa.text(
    "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = :schema AND tablename = :table"
)
_PG_SCHEMA_EXISTS = sa.text("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :schema")
_SQLITE_EXISTS = sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :table")
_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} (workflow_id TEXT NOT NULL, "
    "function_id INTEGER NOT NULL, function_name TEXT NOT NULL, "
    "output {blob}, error {blob}, serialization TEXT NOT NULL, "
    "PRIMARY KEY (workflow_id, function_id))"
)
# What running transactions needs: read and write checkpoints (DELETE, as DBOS grants, for
# tools that clear a workflow's checkpoints); no right to alter or drop the table.
_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, DELETE ON {table} TO {role}",
)


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (any character allowed, quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def is_sqlite_url(url: str) -> bool:
    """Whether ``url`` (with or without a driver, e.g. ``sqlite+aiosqlite``) names SQLite."""
    return url.startswith("sqlite")


@dataclass(frozen=True)
class CheckpointTable:
    """The checkpoint table of one application database.

    Attributes:
        is_sqlite: SQLite (one unqualified table) or PostgreSQL (a table in ``schema``).
        schema: The PostgreSQL schema of the table; not used on SQLite.
    """

    is_sqlite: bool
    schema: str = DEFAULT_SCHEMA

    @property
    def name(self) -> str:
        """The table's name as SQL writes it (schema-qualified and quoted on PostgreSQL)."""
        if self.is_sqlite:
            return _SQLITE_TABLE
        return f"{quote_identifier(self.schema)}.{_PG_TABLE}"

    def exists(self, conn: sa.Connection) -> bool:
        """Whether the table exists (read from the catalog: needs no right on the table)."""
        if self.is_sqlite:
            found = conn.execute(_SQLITE_EXISTS, {"table": _SQLITE_TABLE}).first()
        else:
            found = conn.execute(_PG_EXISTS, {"schema": self.schema, "table": _PG_TABLE}).first()
        return found is not None

    def create(self, conn: sa.Connection) -> None:
        """Create the table (and its PostgreSQL schema) if missing, in ``conn``'s transaction.

        Issues no DDL when the table exists, so a role without the right to create it can
        use a table its owner created.

        Raises:
            DBOSInitializationError: The table is missing and this role may not create it.
        """
        if self.exists(conn):
            return
        try:
            if not self.is_sqlite:
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK_KEY}
                )
                if self.exists(conn):  # created by a concurrent creator while we waited
                    return
                # Checked first: CREATE SCHEMA IF NOT EXISTS needs the right to create one.
                if conn.execute(_PG_SCHEMA_EXISTS, {"schema": self.schema}).first() is None:
                    conn.execute(sa.text(f"CREATE SCHEMA {quote_identifier(self.schema)}"))
            blob = "BLOB" if self.is_sqlite else "BYTEA"
            conn.execute(sa.text(_CREATE_TABLE.format(table=self.name, blob=blob)))
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
                raise
            raise DBOSInitializationError(
                f"The checkpoint table {self.name} is missing in {_shown(conn)} and this role "
                f"may not create it ({exc.orig}). Create it as the schema's owner with "
                "SQLAlchemyDatasource.migrate(url, schema=..., application_role=<this role>) "
                "(or run_dbos_database_migrations(..., app_database_url=url)), then create "
                "the datasource with run_migrations=False."
            ) from exc

    def check(self, conn: sa.Connection) -> None:
        """Make sure the table exists, creating nothing (``run_migrations=False``).

        Raises:
            DBOSInitializationError: The table is missing.
        """
        if self.exists(conn):
            return
        raise DBOSInitializationError(
            f"The checkpoint table {self.name} is missing in {_shown(conn)}, and "
            "run_migrations=False forbids creating it. Create it as the schema's owner with "
            "SQLAlchemyDatasource.migrate(url, schema=..., application_role=...), or create "
            "the datasource with run_migrations=True."
        )

    def grant(self, conn: sa.Connection, role: str) -> None:
        """Give ``role`` the rights running transactions needs on the table (PostgreSQL)."""
        names = {
            "schema": quote_identifier(self.schema),
            "role": quote_identifier(role),
            "table": self.name,
        }
        for statement in _GRANTS:
            conn.execute(sa.text(statement.format(**names)))


def migrate_checkpoint_table(
    url: str, *, schema: str | None = None, application_role: str | None = None
) -> None:
    """Create the checkpoint table of the database at ``url`` as the role that owns it; with
    ``application_role`` (PostgreSQL), grant that role what running transactions needs.

    Raises:
        DBOSInitializationError: A role given for SQLite (which has no roles), or this role
            may not create the table.
        sqlalchemy.exc.DBAPIError: The database is unreachable, or the grant failed (e.g. no
            such role).
    """
    sqlite = is_sqlite_url(url)
    if sqlite and application_role is not None:
        raise DBOSInitializationError(
            "application_role is for PostgreSQL databases: SQLite has no roles (its file's "
            "permissions are the only control)."
        )
    table = CheckpointTable(sqlite, schema_or_default(schema))
    parsed = sa.make_url(url)
    engine = sa.create_engine(
        parsed.set(drivername="sqlite" if sqlite else "postgresql+psycopg"), poolclass=sa.NullPool
    )
    try:
        with engine.begin() as conn:
            table.create(conn)
            if application_role is not None:
                table.grant(conn, application_role)
    finally:
        engine.dispose()


def schema_or_default(schema: object) -> str:
    """The schema a caller chose (``None``: Perdure's), checked to be a name.

    Raises:
        DBOSInitializationError: Not a non-empty string.
    """
    if schema is None:
        return DEFAULT_SCHEMA
    if not isinstance(schema, str) or not schema:
        raise DBOSInitializationError(
            f"schema={schema!r}: pass the name of a PostgreSQL schema (or None for "
            f"{DEFAULT_SCHEMA!r})."
        )
    return schema


def _shown(conn: sa.Connection) -> str:
    url = conn.engine.url
    if is_sqlite_url(url.drivername):
        return url.render_as_string()  # a file path: nothing secret
    return redact_url(url.render_as_string(hide_password=False))
