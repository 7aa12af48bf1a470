"""Test configuration: fixtures live in small plugin modules under ``tests/fixtures``."""

pytest_plugins = ["tests.fixtures.databases", "tests.fixtures.app", "tests.fixtures.programs"]
