"""The storage contract's fixture: a migrated store on a fresh database of each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perdure.storage import Store, open_store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on a fresh database; closed after the test."""
    opened = open_store(db_url)
    opened.migrate()
    yield opened
    opened.close()
