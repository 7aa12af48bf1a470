"""PostgreSQL with two roles: the owner migrates Perdure's schema, the application runs
workflows with row rights only and cannot alter the tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from perdure import DBOS, Queue, SetWorkflowID
from perdure.cli.main import cli
from perdure.error import DBOSInitializationError
from perdure.storage.postgres.connect import psycopg_conninfo
from tests.fixtures.app import make_config

pytestmark = pytest.mark.single_backend(
    "postgres", reason="SQLite has no roles: its file's permissions are the only control"
)


def as_role(url: str, role: str, password: str) -> str:
    """``url`` connecting as ``role``."""
    params = conninfo_to_dict(psycopg_conninfo(url))
    dbname = params.pop("dbname")
    rest = {k: str(v) for k, v in params.items() if k not in ("user", "password")}
    return f"postgresql://{role}:{quote(password)}@/{dbname}?{urlencode(rest)}"


@pytest.fixture
def roles(postgres_url: str) -> Iterator[tuple[str, str, str]]:
    """URLs of an owner role and an application role, and the application role's name."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"perdure_owner_{suffix}", f"perdure_app_{suffix}"
    dbname = conninfo_to_dict(psycopg_conninfo(postgres_url))["dbname"]
    admin = psycopg_conninfo(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw'")
        conn.execute(f"CREATE ROLE {app} LOGIN PASSWORD 'app-pw'")
        conn.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO {owner}')
    try:
        yield as_role(postgres_url, owner, "owner-pw"), as_role(postgres_url, app, "app-pw"), app
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {owner} CASCADE")
            conn.execute(f"DROP OWNED BY {app} CASCADE")
            conn.execute(f"DROP ROLE {app}")
            conn.execute(f"DROP ROLE {owner}")


def test_the_application_role_runs_workflows_but_cannot_alter_the_schema(
    roles: tuple[str, str, str],
) -> None:
    owner_url, app_url, app_role = roles

    # Before the owner migrates, the application role cannot create the schema: a clear error.
    DBOS(config=make_config(app_url))
    with pytest.raises(DBOSInitializationError, match="perdure --db <owner URL> migrate"):
        DBOS.launch()
    DBOS.destroy(destroy_registry=True)

    migrated = CliRunner().invoke(cli, ["--db", owner_url, "migrate", "--app-role", app_role])
    assert migrated.exit_code == 0, migrated.output
    assert f"Role {app_role!r} may run workflows" in migrated.output

    DBOS(config=make_config(app_url))
    queue = Queue("limited", concurrency=2)

    @DBOS.step()
    def double(n: int) -> int:
        return 2 * n

    @DBOS.workflow()
    def child(n: int) -> int:
        DBOS.set_event("half", n)
        DBOS.write_stream("progress", n)
        DBOS.close_stream("progress")
        return double(n)

    @DBOS.workflow()
    def parent() -> int:
        handles = [queue.enqueue(child, n) for n in range(3)]
        total = sum(h.get_result() for h in handles)
        DBOS.sleep(0.01)
        return total + int(DBOS.recv("bonus", timeout_seconds=30) or 0)

    DBOS.launch()
    try:
        with SetWorkflowID("parent"):
            handle = DBOS.start_workflow(parent)
        DBOS.send("parent", 100, "bonus")
        assert handle.get_result() == 106
        children = [s["child_workflow_id"] for s in DBOS.list_workflow_steps("parent")]
        first_child = next(c for c in children if c)
        assert DBOS.get_event(first_child, "half") is not None
        assert len(list(DBOS.read_stream(first_child, "progress"))) == 1
        forked = DBOS.fork_workflow("parent", 2)  # keeps the first enqueue (step 1)
        DBOS.send(forked.workflow_id, 1, "bonus")
        assert forked.get_result() == 7
        DBOS.delete_workflow(forked.workflow_id)
    finally:
        DBOS.destroy(destroy_registry=True)

    with psycopg.connect(psycopg_conninfo(app_url), autocommit=True) as conn:
        for statement in (
            "ALTER TABLE perdure.workflow_status ADD COLUMN sneaky INTEGER",
            "DROP TABLE perdure.operation_outputs",
            "TRUNCATE perdure.notifications",
            "CREATE TABLE perdure.sneaky (x INTEGER)",
            "UPDATE perdure.notification_key SET key = key",
            "DELETE FROM perdure.schema_migrations",
            "CREATE OR REPLACE FUNCTION perdure.hint(note TEXT) RETURNS void "
            "LANGUAGE sql AS 'SELECT 1'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
