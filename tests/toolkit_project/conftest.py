"""The test project's fixtures: only what the perdure plugin provides, and a reset."""

from __future__ import annotations

import pytest
import shop


@pytest.fixture(autouse=True)
def _forget_effects() -> None:
    shop.reset()
