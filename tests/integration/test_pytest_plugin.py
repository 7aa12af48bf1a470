"""The pytest plugin, exercised the way a user meets it: a test project (its own conftest,
tests written with `perdure.testing` only) run by pytest in a subprocess, on each backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PROJECT = Path(__file__).parent.parent / "toolkit_project"


def test_a_user_project_runs_on_the_plugins_fixtures(
    pytester: pytest.Pytester,
    db_url: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for source in PROJECT.iterdir():
        if source.is_file():
            shutil.copy(source, pytester.path / source.name)
    monkeypatch.delenv("PERDURE_TESTING_DATABASE_URL", raising=False)
    options = ["-p", "no:cacheprovider"]
    if db_url.startswith("postgres"):
        server = request.getfixturevalue("postgres_server_url")
        options.append(f"--perdure-database-url={server}")
    result = pytester.runpytest_subprocess(*options)
    result.assert_outcomes(passed=9)
