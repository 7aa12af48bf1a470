"""Database URLs in messages and logs: no secret survives, however it is written."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perdure.config import parse_config
from perdure.error import DBOSInitializationError
from perdure.storage.urls import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:p%40ss:w@db:5432/orders", "postgresql://app:***@db:5432/orders"),
        ("postgres://app:pw@/orders?host=/run/pg", "postgresql://app:***@/orders?host=/run/pg"),
        ("postgresql+psycopg://app:pw@[::1]:5432/x", "postgresql://app:***@[::1]:5432/x"),
        (
            "postgresql://app@h1:5432,h2:5433/x?target_session_attrs=read-write&password=pw",
            "postgresql://app:***@h1:5432,h2:5433/x?target_session_attrs=read-write",
        ),
        ("postgresql://app:pw@db/x?sslpassword=k", "postgresql://app:***@db/x?sslpassword=***"),
        ("host=db user=app password='a b' dbname=x", "postgresql://app:***@db/x"),
        (
            "postgresql://app:pw@db/x?nonsense=1",
            "<a database URL that does not parse, starting 'postgresql://'>",
        ),
        ("sqlite:///tmp/app.sqlite", "sqlite:///tmp/app.sqlite"),
    ],
)
def test_passwords_are_hidden_wherever_they_are_written(url: str, shown: str) -> None:
    assert redact_url(url) == shown


SECRET = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=6,
    max_size=40,
)


@given(password=SECRET, in_query=st.booleans())
def test_no_password_survives_redaction(password: str, in_query: bool) -> None:
    encoded = quote(password, safe="")
    if in_query:
        url = f"postgresql://app@db.example:5432/orders?sslmode=require&password={encoded}"
    else:
        url = f"postgresql://app:{encoded}@db.example:5432/orders?sslmode=require"
    # Rebuilt from what libpq parsed: nothing of the password can be left in it.
    assert redact_url(url) == "postgresql://app:***@db.example:5432/orders?sslmode=require"


def test_an_unsupported_url_is_refused_without_being_echoed() -> None:
    with pytest.raises(DBOSInitializationError, match="starting 'mysql://'") as caught:
        parse_config({"name": "a", "system_database_url": "mysql://app:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)
