"""Runnable Perdure examples; start each with ``python -m examples.NAME`` from the repo root."""
