"""Diagnostic scripts behind the analysis in benchmarks/README.md (not part of the table)."""
