"""A DBOS Transact config runs unchanged: DBOS's keys are honoured, or accepted and ignored
with one warning naming them; a key neither knows is refused with the closest one."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from perdure import DBOS
from perdure.config import parse_config
from perdure.error import DBOSInitializationError
from tests.fixtures.app import make_config
from tests.integration.system_tables import run_sql


def test_a_dbos_34_config_is_accepted_and_what_is_ignored_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config: dict[str, Any] = {
        "name": "dbos-app",
        "system_database_url": "sqlite:///app.sqlite",
        "conductor_key": None,  # the template's os.environ.get(...): unset, so not worth a word
        "enable_patching": True,
        "otlp_attributes": {"team": "payments"},
        "sys_db_pool_size": 7,
        "use_listen_notify": False,
        "run_migrations": False,
    }
    with caplog.at_level(logging.WARNING, logger="perdure"):
        settings = parse_config(config)
    warnings = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert warnings == [
        "Perdure ignores these DBOS config keys: enable_patching, otlp_attributes "
        "(see 'Coming from DBOS' in the README)."
    ]
    assert (settings.sys_db_pool_size, settings.use_listen_notify, settings.run_migrations) == (
        7,
        False,
        False,
    )


def test_a_key_nobody_defines_is_refused_with_the_closest_one() -> None:
    with pytest.raises(DBOSInitializationError, match="did you mean 'sys_db_pool_size'"):
        parse_config({"name": "a", "sys_db_pool_sise": 3})
    with pytest.raises(DBOSInitializationError, match="'yes' is not True or False"):
        parse_config({"name": "a", "use_listen_notify": "yes"})


def test_dbos_2_database_url_names_the_application_database() -> None:
    settings = parse_config({"name": "a", "database_url": "postgresql://u:p@db:5432/shop"})
    assert settings.application_database_url == "postgresql://u:p@db:5432/shop"
    assert settings.system_database_url == "postgresql://u:p@db:5432/shop_dbos_sys"
    with_query = parse_config(
        {"name": "a", "database_url": "postgresql://u@db/shop?sslmode=require"}
    )
    assert with_query.system_database_url == "postgresql://u@db/shop_dbos_sys?sslmode=require"
    no_name = parse_config({"name": "a", "database_url": "postgresql://u:p@db:5432"})
    assert no_name.system_database_url == "postgresql://u:p@db:5432"  # the default database
    sqlite = parse_config({"name": "a", "database_url": "sqlite:///shop.sqlite"})
    assert sqlite.system_database_url == sqlite.application_database_url == "sqlite:///shop.sqlite"
    both = {
        "name": "a",
        "database_url": "sqlite:///a.db",
        "application_database_url": "sqlite:///b",
    }
    with pytest.raises(DBOSInitializationError, match="give one"):
        parse_config(both)


def test_dbos_2_admin_server_keys() -> None:
    assert parse_config({"name": "a", "run_admin_server": False}).admin_server is None
    on = parse_config({"name": "a", "run_admin_server": True}).admin_server
    assert on is not None
    assert on.port == 3001
    port_only = parse_config({"name": "a", "admin_port": 3002}).admin_server
    assert port_only is not None
    assert port_only.port == 3002
    with pytest.raises(DBOSInitializationError, match="both configure the admin server"):
        parse_config({"name": "a", "run_admin_server": True, "admin_server": {"port": 1}})


def test_run_admin_server_serves_on_admin_port(db_url: str) -> None:
    DBOS(config=make_config(db_url, run_admin_server=True, admin_port=0))
    DBOS.launch()
    try:
        runtime = DBOS._runtime
        assert runtime is not None
        assert runtime.admin_server is not None
    finally:
        DBOS.destroy(destroy_registry=True)


def test_run_migrations_false_needs_a_current_schema(db_url: str) -> None:
    DBOS(config=make_config(db_url, run_migrations=False))
    with pytest.raises(DBOSInitializationError, match="has no Perdure schema"):
        DBOS.launch()
    DBOS.destroy(destroy_registry=True)
    DBOS(config=make_config(db_url))
    DBOS.launch()  # migrates
    DBOS.destroy(destroy_registry=True)
    version = run_sql(db_url, "SELECT MAX(version) FROM {p}schema_migrations")[0][0]
    run_sql(db_url, "DELETE FROM {p}schema_migrations WHERE version = :v", v=version)
    DBOS(config=make_config(db_url, run_migrations=False))
    with pytest.raises(DBOSInitializationError, match="run_migrations is False"):
        DBOS.launch()
    DBOS.destroy(destroy_registry=True)


@pytest.mark.single_backend("postgres", reason="only PostgreSQL has a pool and notifications")
def test_pool_size_and_listen_notify_are_honoured(postgres_url: str) -> None:
    DBOS(config=make_config(postgres_url, sys_db_pool_size=3, use_listen_notify=False))

    @DBOS.workflow()
    def waiter() -> object:
        return DBOS.recv("t", timeout_seconds=30)

    DBOS.launch()
    try:
        runtime = DBOS._runtime
        assert runtime is not None
        assert runtime._listener is None  # waiters poll
        assert runtime._store.database._pool.max_size == 3
        handle = DBOS.start_workflow(waiter)
        DBOS.send(handle.workflow_id, "hi", "t")
        assert handle.get_result() == "hi"
    finally:
        DBOS.destroy(destroy_registry=True)
