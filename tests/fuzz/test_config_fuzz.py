"""Config parsing under generated input: a `Settings` or a `DBOSInitializationError` naming a
key, whatever the values."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from perdure.config import DBOSConfig, parse_config
from perdure.error import DBOSInitializationError

KEYS = sorted(DBOSConfig.__annotations__)
ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.sampled_from(["json", "pickle", "sqlite:///x.sqlite", "postgresql://u:p@h/d", "DEBUG"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(st.dictionaries(st.sampled_from([*KEYS, "nonsense"]), ANY, max_size=6), st.booleans())
def test_any_config_parses_or_is_refused_naming_a_key(config: dict[str, Any], named: bool) -> None:
    if named:
        config["name"] = "fuzz"
    try:
        settings = parse_config(config)
    except DBOSInitializationError as exc:
        refused = str(exc)
    else:
        assert settings.name == config["name"]
        return
    assert any(repr(key) in refused for key in [*KEYS, "nonsense"]), refused


@given(ANY)
def test_admin_server_settings_parse_or_are_refused(value: Any) -> None:
    try:
        parse_config({"name": "fuzz", "admin_server": value})
    except DBOSInitializationError as exc:
        refused = str(exc)
    else:
        return
    assert "'admin_server'" in refused
