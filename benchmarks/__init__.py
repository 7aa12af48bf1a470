"""Benchmarks of Perdure side by side with DBOS Transact on the same database server.

Run ``python -m benchmarks run --db postgres --impl both`` from the repository root; see
``benchmarks/README.md`` for the scenarios and the latest figures. Each implementation runs in
its own worker subprocess (``benchmarks.worker``), because both are process-global singletons.
"""
