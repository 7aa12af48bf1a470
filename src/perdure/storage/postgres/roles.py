"""The rights an application role needs to run workflows on a schema another role owns.

The owner (the role that runs ``perdure migrate``) creates and alters Perdure's tables; the
application role reads and writes rows, and nothing more: it cannot alter, drop or truncate a
table, nor change the notification key. Default privileges give it the same rights on tables
later migrations create.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from perdure.storage.postgres.connect import CONNECT_TIMEOUT_SEC, psycopg_conninfo

SCHEMA = "perdure"
# Tables the application reads but never writes.
READ_ONLY_TABLES = ("schema_migrations", "notification_key")

_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    "REVOKE INSERT, UPDATE, DELETE ON {read_only} FROM {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
)


def grant_app_role(url: str, role: str) -> None:
    """Give ``role`` what running workflows needs on the schema, as the owner of ``url``.

    Raises:
        psycopg.Error: The role does not exist, or the connected role may not grant.
    """
    names = {
        "schema": sql.Identifier(SCHEMA),
        "role": sql.Identifier(role),
        "read_only": sql.SQL(", ").join(sql.Identifier(SCHEMA, t) for t in READ_ONLY_TABLES),
    }
    with psycopg.connect(psycopg_conninfo(url), connect_timeout=CONNECT_TIMEOUT_SEC) as conn:
        for statement in _GRANTS:
            conn.execute(sql.SQL(statement).format(**names))
