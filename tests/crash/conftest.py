"""Fixtures of the crash tests: the program launcher and the witness of a run.

Request ``programs`` after the database fixture (``witness``, ``postgres_url``): fixtures tear
down in reverse order, so leftover programs are killed before their database is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.harness import Programs, Witness


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    """Starts crash programs; any still running at the end of the test is SIGKILLed."""
    launcher = Programs(tmp_path)
    yield launcher
    launcher.kill_all()


@pytest.fixture
def witness(db_url: str, tmp_path: Path) -> Witness:
    """The effects table in a fresh database (once per backend) and a fresh milestones file."""
    return Witness.create(db_url, tmp_path)
