"""Config keys of DBOS Transact (2.x and 3.x): each honoured through Perdure's own settings, or
accepted and ignored with one warning naming it, so a DBOS config runs unchanged."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from perdure.error import DBOSInitializationError
from perdure.logs import get_logger

logger = get_logger(__name__)

# DBOS keys Perdure has no use for (its own pool, engine, logs, cloud services): accepted,
# and ignored with a warning when set to something other than None.
IGNORED_KEYS = frozenset({
    "sys_db_polling_concurrency", "db_engine_kwargs", "dbos_system_schema",
    "system_database_engine", "console_log_level", "otlp_log_level", "otlp_logs_endpoints",
    "otlp_attributes", "otel_attribute_format", "notification_coalesce_sec",
    "kafka_queue_polling_interval_sec", "enable_patching", "sys_db_idle_transaction_timeout_sec",
    "observability_query_timeout_sec", "conductor_key", "conductor_url",
    "conductor_executor_metadata", "conductor_metadata_only_mode", "transact_enterprise_key",
    "auto_upgrade", "auto_upgrade_interval_sec", "auto_upgrade_grace_sec", "sharding",
})  # fmt: skip
# DBOS 2.x keys translated into Perdure's: the application database, and the admin server.
TRANSLATED_KEYS = frozenset({"database_url", "run_admin_server", "admin_port"})
DBOS_ADMIN_PORT = 3001


def translate(config: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """``config`` in Perdure's own keys.

    Raises:
        DBOSInitializationError: A key neither Perdure nor DBOS defines (with the closest one).
    """
    accepted = {*known, *IGNORED_KEYS, *TRANSLATED_KEYS}
    unknown = sorted(k for k in config if k not in accepted)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), sorted(accepted), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DBOSInitializationError(
            f"Unknown DBOS config key(s) {', '.join(hints)}. Perdure accepts the keys of DBOS "
            f"Transact and its own: {', '.join(sorted(known))}."
        )
    ignored = sorted(k for k in IGNORED_KEYS if config.get(k) is not None)
    if ignored:
        logger.warning(
            "Perdure ignores these DBOS config keys: %s (see 'Coming from DBOS' in the README).",
            ", ".join(ignored),
        )
    native = {k: v for k, v in config.items() if k not in IGNORED_KEYS | TRANSLATED_KEYS}
    _translate_database_url(config, native)
    _translate_admin_server(config, native)
    return native


def _translate_database_url(config: Mapping[str, Any], native: dict[str, Any]) -> None:
    # DBOS 2.x: database_url is the application database; the system database, unless given,
    # is a database beside it named "<name>_dbos_sys" (on SQLite, the same file).
    url = config.get("database_url")
    if url is None:
        return
    if config.get("application_database_url") is not None:
        raise DBOSInitializationError(
            "Config keys 'database_url' and 'application_database_url' name the same thing "
            "(DBOS 2.x and Perdure): give one."
        )
    native["application_database_url"] = url
    if config.get("system_database_url") is None and isinstance(url, str):
        native["system_database_url"] = dbos2_system_database_url(url)


def dbos2_system_database_url(url: str) -> str:
    """The system database DBOS 2.x pairs with application database ``url``."""
    if url.startswith("sqlite"):
        return url
    parts = urlsplit(url)
    name = parts.path.strip("/")
    if not name:
        return url  # no database name: the server's default database holds both
    return urlunsplit(parts._replace(path=f"/{name}_dbos_sys"))


def _translate_admin_server(config: Mapping[str, Any], native: dict[str, Any]) -> None:
    # DBOS 2.x: run_admin_server (default True there) and admin_port. Perdure serves the admin
    # server only when asked: run_admin_server=True, or a port without run_admin_server=False.
    run, port = config.get("run_admin_server"), config.get("admin_port")
    if run is None and port is None:
        return
    if config.get("admin_server") is not None:
        raise DBOSInitializationError(
            "Config keys 'run_admin_server'/'admin_port' (DBOS 2.x) and 'admin_server' "
            "(Perdure) both configure the admin server: give one."
        )
    if run is not True and run is not False and run is not None:
        raise DBOSInitializationError(
            f"Config key 'run_admin_server' is {run!r}; accepted: True or False."
        )
    if run or (run is None and port is not None):
        native["admin_server"] = {"port": DBOS_ADMIN_PORT if port is None else port}
