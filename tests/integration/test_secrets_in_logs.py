"""The password of the system database never reaches a log record or an error message."""

from __future__ import annotations

import logging
import socket
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from perdure import DBOS
from perdure.error import DBOSInitializationError
from tests.fixtures.app import make_config

pytestmark = pytest.mark.single_backend(
    "postgres", reason="a SQLite URL is a file path: it holds no password"
)

SECRET = "hunter2:@/?#%-secret"  # noqa: S105 - a test password full of URL syntax


def with_password(url: str) -> tuple[str, str]:
    """``url`` with a password (its own if it has one: that is the secret then)."""
    params = conninfo_to_dict(url)
    if params.get("password"):
        return url, str(params["password"])
    user = quote(str(params.get("user", "postgres")), safe="")
    rest = {k: v for k, v in params.items() if k not in ("user", "password")}
    return f"postgresql://{user}:{quote(SECRET, safe='')}@/?" + make_conninfo(
        **{k: str(v) for k, v in rest.items()}
    ).replace(" ", "&"), SECRET


def test_no_log_record_or_error_holds_the_password(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, secret = with_password(postgres_url)
    caplog.set_level(logging.DEBUG)
    DBOS(config=make_config(url))

    @DBOS.workflow()
    def hello() -> str:
        return "hi"

    DBOS.launch()
    try:
        assert hello() == "hi"
    finally:
        DBOS.destroy(destroy_registry=True)
    # A server that is not there: the launch waits, logs, then fails with a message.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = f"postgresql://app:{quote(secret, safe='')}@127.0.0.1:{closed_port}/x"
    DBOS(config=make_config(unreachable, system_database_wait_sec=1))
    try:
        with pytest.raises(DBOSInitializationError) as caught:
            DBOS.launch()
    finally:
        DBOS.destroy(destroy_registry=True)
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    texts = [str(caught.value), *(r.getMessage() for r in caplog.records)]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert any("***" in t for t in texts)
    for text in texts:
        assert secret not in text
        assert quote(secret, safe="") not in text
