"""Test configuration: fixtures live in small plugin modules under ``tests/fixtures``."""

import os

from hypothesis import settings

pytest_plugins = ["tests.fixtures.databases", "tests.fixtures.app", "tests.fixtures.programs"]

# A user's test project, run by tests/integration/test_pytest_plugin.py in its own session.
collect_ignore = ["toolkit_project"]

# Property tests: a bounded number of examples per run, and no per-example deadline (a loaded
# two-core runner is slow at times; what the properties check is behaviour, not speed).
# HYPOTHESIS_PROFILE=deep explores longer, e.g. before a release.
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("deep", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
