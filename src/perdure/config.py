"""The `DBOSConfig` dictionary and its validation into a typed `Settings` object."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from typing_extensions import NotRequired

from perdure.config_compat import IGNORED_KEYS, TRANSLATED_KEYS, translate
from perdure.error import DBOSInitializationError
from perdure.serialization import (
    JsonSerializer,
    PayloadCodec,
    PickleSerializer,
    Serializer,
    SignedPickleSerializer,
)
from perdure.serialization.interfaces import as_serializer
from perdure.storage.urls import scheme_of

SYSTEM_DATABASE_URL_ENV = "PERDURE_SYSTEM_DATABASE_URL"


class DBOSConfig(TypedDict):
    """Configuration passed to ``DBOS(config=...)``. Only ``name`` is required."""

    name: str
    system_database_url: NotRequired[str | None]
    application_database_url: NotRequired[str | None]
    executor_id: NotRequired[str | None]
    application_version: NotRequired[str | None]
    serializer: NotRequired[str | Serializer | None]
    pickle_signing_key: NotRequired[str | bytes | Sequence[str | bytes] | None]
    payload_codec: NotRequired[PayloadCodec | None]
    max_executor_threads: NotRequired[int | None]
    notification_listener_polling_interval_sec: NotRequired[float | None]
    scheduler_polling_interval_sec: NotRequired[float | None]
    heartbeat_interval_sec: NotRequired[float | None]
    dead_executor_timeout_sec: NotRequired[float | None]
    system_database_wait_sec: NotRequired[float | None]
    log_level: NotRequired[str | None]
    enable_otlp: NotRequired[bool | None]
    otlp_traces_endpoints: NotRequired[list[str] | None]
    admin_server: NotRequired[Mapping[str, Any] | None]
    # Keys of DBOS Transact, honoured: the PostgreSQL pool's size, whether to LISTEN for
    # notifications (else waiters poll), whether launch migrates (else it checks the schema).
    sys_db_pool_size: NotRequired[int | None]
    use_listen_notify: NotRequired[bool | None]
    run_migrations: NotRequired[bool | None]
    # DBOS 2.x keys, translated: database_url (the application database), the admin server.
    database_url: NotRequired[str | None]
    run_admin_server: NotRequired[bool | None]
    admin_port: NotRequired[int | None]
    # DBOS keys Perdure accepts and ignores (one warning names those set): see config_compat.
    sys_db_polling_concurrency: NotRequired[Any]
    db_engine_kwargs: NotRequired[Any]
    dbos_system_schema: NotRequired[Any]
    system_database_engine: NotRequired[Any]
    console_log_level: NotRequired[Any]
    otlp_log_level: NotRequired[Any]
    otlp_logs_endpoints: NotRequired[Any]
    otlp_attributes: NotRequired[Any]
    otel_attribute_format: NotRequired[Any]
    notification_coalesce_sec: NotRequired[Any]
    kafka_queue_polling_interval_sec: NotRequired[Any]
    enable_patching: NotRequired[Any]
    sys_db_idle_transaction_timeout_sec: NotRequired[Any]
    observability_query_timeout_sec: NotRequired[Any]
    conductor_key: NotRequired[Any]
    conductor_url: NotRequired[Any]
    conductor_executor_metadata: NotRequired[Any]
    conductor_metadata_only_mode: NotRequired[Any]
    transact_enterprise_key: NotRequired[Any]
    auto_upgrade: NotRequired[Any]
    auto_upgrade_interval_sec: NotRequired[Any]
    auto_upgrade_grace_sec: NotRequired[Any]
    sharding: NotRequired[Any]


# Perdure's own keys and the DBOS keys it honours natively (the rest: config_compat).
_KNOWN_KEYS = frozenset(DBOSConfig.__annotations__) - IGNORED_KEYS - TRANSLATED_KEYS
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# Hosts only this machine can reach: the admin server needs no token there.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class AdminServerSettings:
    """Where the admin HTTP server listens, and the bearer token it requires (if any)."""

    host: str = "127.0.0.1"
    port: int = 3001
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    """Validated configuration with every default filled in."""

    name: str
    # Never in a repr: a URL may hold a password (show them through `redact_url`).
    system_database_url: str = field(repr=False)
    application_database_url: str = field(repr=False)
    executor_id: str
    application_version: str
    serializer: Serializer
    # Keys of signed pickle (the first signs, all verify); empty: pickle is unsigned.
    pickle_signing_keys: tuple[bytes, ...] = field(repr=False)
    payload_codec: PayloadCodec | None
    max_executor_threads: int
    notification_listener_polling_interval_sec: float
    scheduler_polling_interval_sec: float
    heartbeat_interval_sec: float
    dead_executor_timeout_sec: float
    # How long DBOS.launch() waits for a PostgreSQL server that is down or starting.
    system_database_wait_sec: float
    log_level: str | None
    admin_server: AdminServerSettings | None = None
    enable_otlp: bool = False
    otlp_traces_endpoints: tuple[str, ...] = ()
    # PostgreSQL connections (None: as many as threads need); LISTEN for notifications; migrate
    # at launch (else only check the schema is current).
    sys_db_pool_size: int | None = None
    use_listen_notify: bool = True
    run_migrations: bool = True


def _fail(key: str, problem: str, accepted: str) -> DBOSInitializationError:
    return DBOSInitializationError(
        f"Invalid DBOS config key {key!r}: {problem}. Accepted: {accepted}."
    )


def default_system_database_url(name: str) -> str:
    """The URL used when none is configured: the env var, else ``./<name>.sqlite``."""
    from_env = os.environ.get(SYSTEM_DATABASE_URL_ENV)
    if from_env:
        return from_env
    return f"sqlite:///{name.replace('-', '_')}.sqlite"


def _check_url(key: str, url: object) -> str:
    if not isinstance(url, str) or not url.startswith(
        ("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg://")
    ):
        shown = repr(url) if not isinstance(url, str) else f"a URL starting {scheme_of(url)!r}"
        raise _fail(
            key,
            f"{shown} is not a supported database URL",  # never the URL: it may hold a password
            "'sqlite:///path/to/file.sqlite' or 'postgresql://user:password@host:port/database'",
        )
    return url


def _positive_number(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _fail(key, f"{value!r} is not a positive number", "a number of seconds above 0")
    return float(value)


def _serializer(value: object) -> Serializer:
    if value is None or value == "json":
        return JsonSerializer()
    if value == "pickle":
        return PickleSerializer()
    adapted = as_serializer(value)  # a DBOS Serializer, or any object with name/dumps/loads
    if adapted is not None:
        return adapted
    raise _fail(
        "serializer",
        f"{value!r} is not a serializer",
        "'json' (default), 'pickle', an object with name, dumps(value) and loads(data), or a "
        "DBOS Serializer (serialize, deserialize, name())",
    )


_KEY_ACCEPTED = (
    f"a secret of at least {SignedPickleSerializer.MIN_KEY_BYTES} bytes (str or bytes), or a "
    "list of them (the first signs, all verify), kept out of the database, e.g. "
    "os.environ['PERDURE_PICKLE_KEY']"
)


def _signing_keys(value: object) -> tuple[bytes, ...]:
    if value is None:
        return ()
    keys = list(value) if isinstance(value, (list, tuple)) else [value]
    parsed = []
    for key in keys:
        if not isinstance(key, (str, bytes)):
            raise _fail("pickle_signing_key", f"a {type(key).__name__} is not a key", _KEY_ACCEPTED)
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < SignedPickleSerializer.MIN_KEY_BYTES:
            # Never echo the key itself: the message may end up in a log.
            raise _fail("pickle_signing_key", f"a key is {len(raw)} bytes long", _KEY_ACCEPTED)
        parsed.append(raw)
    if not parsed:
        raise _fail("pickle_signing_key", "the list of keys is empty", _KEY_ACCEPTED)
    return tuple(parsed)


def _optional_count(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _fail(key, f"{value!r} is not a positive integer", "int >= 1")
    return value


def _flag(config: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(key, f"{value!r} is not True or False", "True or False")
    return value


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(key, f"{value!r} is not a string", "a string")
    return value


_ADMIN_ACCEPTED = (
    "a dict with any of 'enabled' (bool, default True), 'host' (default '127.0.0.1'), 'port' "
    "(0-65535, default 3001; 0 picks a free one) and 'token' (required unless host is "
    "127.0.0.1, ::1 or localhost; clients send 'Authorization: Bearer <token>')"
)


def parse_admin_server(value: object) -> AdminServerSettings | None:
    """The admin server's settings from config key ``admin_server`` (None: it does not run)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail("admin_server", f"{value!r} is not a dict", _ADMIN_ACCEPTED)
    unknown = sorted(set(value) - {"enabled", "host", "port", "token"})
    if unknown:
        raise _fail(
            "admin_server", f"unknown setting(s) {', '.join(map(repr, unknown))}", _ADMIN_ACCEPTED
        )
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail("admin_server", f"'enabled' is {enabled!r}, not True or False", _ADMIN_ACCEPTED)
    if not enabled:
        return None
    host = value.get("host", "127.0.0.1")
    port = value.get("port", 3001)
    token = value.get("token")
    if not isinstance(host, str) or not host:
        raise _fail(
            "admin_server", f"'host' is {host!r}, not a host name or address", _ADMIN_ACCEPTED
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _fail("admin_server", f"'port' is {port!r}, not a port number", _ADMIN_ACCEPTED)
    if token is not None and (not isinstance(token, str) or not token):
        raise _fail("admin_server", "'token' is not a non-empty string", _ADMIN_ACCEPTED)
    if token is None and host not in LOOPBACK_HOSTS:
        raise _fail(
            "admin_server",
            f"host {host!r} lets other machines in, and no 'token' is set",
            _ADMIN_ACCEPTED,
        )
    return AdminServerSettings(host=host, port=port, token=token)


def _otlp(config: Mapping[str, Any]) -> tuple[bool, tuple[str, ...]]:
    enabled = config.get("enable_otlp")
    if enabled is not None and not isinstance(enabled, bool):
        raise _fail("enable_otlp", f"{enabled!r} is not True or False", "True or False")
    endpoints = config.get("otlp_traces_endpoints") or []
    if not isinstance(endpoints, (list, tuple)) or not all(
        isinstance(e, str) and e.startswith(("http://", "https://")) for e in endpoints
    ):
        raise _fail(
            "otlp_traces_endpoints",
            f"{endpoints!r} is not a list of http(s) URLs",
            "a list such as ['http://localhost:4318/v1/traces']",
        )
    if endpoints and not enabled:
        raise _fail(
            "otlp_traces_endpoints",
            "it is set but enable_otlp is not True, so nothing would be exported",
            "enable_otlp=True with the endpoints, or neither",
        )
    return bool(enabled), tuple(endpoints)


def parse_config(config: Mapping[str, Any]) -> Settings:
    """Validate a user config; raise `DBOSInitializationError` naming the bad key and the fix."""
    if not isinstance(config, Mapping):
        raise DBOSInitializationError(
            f"DBOS(config=...) expects a dict such as {{'name': 'my-app'}}, got {config!r}."
        )
    config = translate(config, _KNOWN_KEYS)
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail("name", f"{name!r} is missing or empty", "a non-empty application name")
    system_url = _check_url(
        "system_database_url",
        config.get("system_database_url") or default_system_database_url(name),
    )
    app_url = config.get("application_database_url")
    app_url = system_url if app_url is None else _check_url("application_database_url", app_url)
    threads = config.get("max_executor_threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise _fail("max_executor_threads", f"{threads!r} is not a positive integer", "int >= 1")
    log_level = _optional_str(config, "log_level")
    if log_level is not None and log_level.upper() not in _LOG_LEVELS:
        raise _fail("log_level", f"{log_level!r} is not a log level", ", ".join(_LOG_LEVELS))
    codec = config.get("payload_codec")
    if codec is not None and not (hasattr(codec, "encode") and hasattr(codec, "decode")):
        raise _fail(
            "payload_codec",
            f"{codec!r} has no encode/decode",
            "an object with encode(bytes) -> bytes and decode(bytes) -> bytes",
        )
    heartbeat = _positive_number(config, "heartbeat_interval_sec", 5.0)
    dead_after = _positive_number(config, "dead_executor_timeout_sec", 60.0)
    if dead_after < 2 * heartbeat:
        raise _fail(
            "dead_executor_timeout_sec",
            f"{dead_after!r} is less than twice heartbeat_interval_sec ({heartbeat!r}), so a "
            "live process could be taken for dead",
            "at least twice heartbeat_interval_sec (default 60 with heartbeats every 5)",
        )
    enable_otlp, otlp_endpoints = _otlp(config)
    return Settings(
        name=name,
        system_database_url=system_url,
        application_database_url=app_url,
        executor_id=_optional_str(config, "executor_id") or "local",
        application_version=_optional_str(config, "application_version") or "",
        serializer=_serializer(config.get("serializer")),
        pickle_signing_keys=_signing_keys(config.get("pickle_signing_key")),
        payload_codec=codec,
        max_executor_threads=threads or 64,
        notification_listener_polling_interval_sec=_positive_number(
            config, "notification_listener_polling_interval_sec", 1.0
        ),
        scheduler_polling_interval_sec=_positive_number(
            config, "scheduler_polling_interval_sec", 1.0
        ),
        heartbeat_interval_sec=heartbeat,
        dead_executor_timeout_sec=dead_after,
        system_database_wait_sec=_positive_number(config, "system_database_wait_sec", 60.0),
        log_level=log_level.upper() if log_level else None,
        admin_server=parse_admin_server(config.get("admin_server")),
        sys_db_pool_size=_optional_count(config, "sys_db_pool_size"),
        use_listen_notify=_flag(config, "use_listen_notify", default=True),
        run_migrations=_flag(config, "run_migrations", default=True),
        enable_otlp=enable_otlp,
        otlp_traces_endpoints=otlp_endpoints,
    )


def apply_log_level(settings: Settings) -> None:
    """Set the ``perdure`` logger's level if configured; the library installs no handlers."""
    if settings.log_level:
        logging.getLogger("perdure").setLevel(settings.log_level)
