"""Configuration validation and defaults, and the shape of the error hierarchy (no database)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from perdure import DBOS, DBOSConfig, error
from perdure.config import SYSTEM_DATABASE_URL_ENV, parse_config
from perdure.config_compat import IGNORED_KEYS, TRANSLATED_KEYS
from perdure.error import (
    DBOSException,
    DBOSInitializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from perdure.serialization import JsonSerializer, PickleSerializer


@pytest.fixture(autouse=True)
def _no_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYSTEM_DATABASE_URL_ENV, raising=False)


def test_config_keys_are_the_documented_ones() -> None:
    assert (
        set(DBOSConfig.__annotations__)
        == {
            "name",
            "system_database_url",
            "application_database_url",
            "executor_id",
            "application_version",
            "serializer",
            "pickle_signing_key",
            "payload_codec",
            "max_executor_threads",
            "notification_listener_polling_interval_sec",
            "scheduler_polling_interval_sec",
            "heartbeat_interval_sec",
            "dead_executor_timeout_sec",
            "system_database_wait_sec",
            "log_level",
            "enable_otlp",
            "otlp_traces_endpoints",
            "admin_server",
            # DBOS keys honoured natively
            "sys_db_pool_size",
            "use_listen_notify",
            "run_migrations",
        }
        | IGNORED_KEYS
        | TRANSLATED_KEYS
    )


def test_unknown_key_is_named_with_the_accepted_keys() -> None:
    with pytest.raises(DBOSInitializationError) as caught:
        DBOS(config={"name": "app", "databse_url": "sqlite:///x.sqlite"})  # type: ignore[typeddict-unknown-key]
    message = str(caught.value)
    assert "'databse_url'" in message
    for accepted in ("name", "system_database_url", "serializer", "executor_id"):
        assert accepted in message
    assert DBOS._runtime is None  # a rejected config leaves nothing configured


@pytest.mark.parametrize(
    ("config", "key", "accepted"),
    [
        (
            {"name": "app", "system_database_url": "mysql://u@h/db"},
            "system_database_url",
            "sqlite:///",
        ),
        ({"name": "app", "system_database_url": 42}, "system_database_url", "postgresql://"),
        (
            {"name": "app", "application_database_url": "redis://h"},
            "application_database_url",
            "sqlite:///",
        ),
        ({"name": "app", "serializer": "yaml"}, "serializer", "pickle"),
        ({"name": "app", "serializer": object()}, "serializer", "dumps"),
        ({"name": "app", "payload_codec": "rot13"}, "payload_codec", "encode"),
        ({"name": "app", "pickle_signing_key": 42}, "pickle_signing_key", "at least 16 bytes"),
        ({"name": "app", "pickle_signing_key": []}, "pickle_signing_key", "list of them"),
        ({"name": "app", "pickle_signing_key": ["k" * 16, b""]}, "pickle_signing_key", "bytes"),
        ({"name": "app", "max_executor_threads": 0}, "max_executor_threads", ">= 1"),
        ({"name": "app", "max_executor_threads": True}, "max_executor_threads", ">= 1"),
        ({"name": "app", "log_level": "LOUD"}, "log_level", "DEBUG"),
        ({"name": "app", "executor_id": 7}, "executor_id", "string"),
        (
            {"name": "app", "notification_listener_polling_interval_sec": -1},
            "notification_listener_polling_interval_sec",
            "above 0",
        ),
        ({"name": ""}, "name", "non-empty"),
        ({}, "name", "non-empty"),
    ],
)
def test_bad_values_name_the_key_and_what_is_accepted(
    config: dict[str, Any], key: str, accepted: str
) -> None:
    with pytest.raises(DBOSInitializationError) as caught:
        parse_config(config)
    message = str(caught.value)
    assert repr(key) in message
    assert accepted in message


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(DBOSInitializationError, match="expects a dict"):
        parse_config("my-app")  # type: ignore[arg-type]


def test_defaults() -> None:
    settings = parse_config({"name": "my-cool-app"})
    assert settings.system_database_url == "sqlite:///my_cool_app.sqlite"
    assert settings.application_database_url == settings.system_database_url
    assert settings.executor_id == "local"
    assert isinstance(settings.serializer, JsonSerializer)
    assert settings.payload_codec is None
    assert settings.notification_listener_polling_interval_sec == 1.0


def test_env_var_overrides_the_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSTEM_DATABASE_URL_ENV, "postgresql://u:p@db.example:5432/prod")
    settings = parse_config({"name": "my-app"})
    assert settings.system_database_url == "postgresql://u:p@db.example:5432/prod"
    assert settings.application_database_url == "postgresql://u:p@db.example:5432/prod"


def test_explicit_url_wins_over_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSTEM_DATABASE_URL_ENV, "postgresql://u:p@db.example:5432/prod")
    settings = parse_config({"name": "my-app", "system_database_url": "sqlite:///local.sqlite"})
    assert settings.system_database_url == "sqlite:///local.sqlite"


def test_serializer_choices() -> None:
    assert isinstance(
        parse_config({"name": "a", "serializer": "pickle"}).serializer, PickleSerializer
    )
    assert isinstance(parse_config({"name": "a", "serializer": "json"}).serializer, JsonSerializer)
    custom = JsonSerializer()
    assert parse_config({"name": "a", "serializer": custom}).serializer is custom


def test_a_short_signing_key_is_refused_without_being_echoed() -> None:
    with pytest.raises(DBOSInitializationError, match="a key is 6 bytes long") as caught:
        parse_config({"name": "a", "pickle_signing_key": "hunter"})
    assert "hunter" not in str(caught.value)
    keys = parse_config({"name": "a", "pickle_signing_key": ["k" * 16, b"\x00" * 20]})
    assert keys.pickle_signing_keys == (b"k" * 16, b"\x00" * 20)


SPEC_ERRORS = (
    "DBOSInitializationError",
    "DBOSConflictingWorkflowError",
    "DBOSNonExistentWorkflowError",
    "DBOSWorkflowFunctionNotFoundError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSQueueDeduplicatedError",
    "MaxRecoveryAttemptsExceededError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSNotAuthorizedError",
    "DBOSWorkflowConflictIDError",
    "DBOSSerializationError",
)


def test_error_hierarchy() -> None:
    codes = set()
    for name in SPEC_ERRORS:
        cls = getattr(error, name)
        assert inspect.isclass(cls)
        code = getattr(cls, "dbos_error_code", None)
        assert isinstance(code, int), name
        codes.add(code)
        if cls in (DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError):
            # User code must not swallow a cancellation, or the loss of its workflow to
            # another execution, with `except Exception`.
            assert not issubclass(cls, Exception)
            assert issubclass(cls, error.DBOSBaseException)
        else:
            assert issubclass(cls, DBOSException), name
    assert len(codes) == len(SPEC_ERRORS)  # one code per error class


def test_settings_never_show_their_secrets() -> None:
    settings = parse_config(
        {
            "name": "a",
            "system_database_url": "postgresql://app:url-secret@db/x",
            "pickle_signing_key": "key-secret-of-16-bytes",
            "admin_server": {"token": "token-secret", "host": "0.0.0.0"},  # noqa: S104
        }
    )
    shown = repr(settings)
    for secret in ("url-secret", "key-secret", "token-secret"):
        assert secret not in shown
