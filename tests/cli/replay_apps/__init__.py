"""Versions of one small application, imported by ``perdure replay --app`` in the CLI tests."""
