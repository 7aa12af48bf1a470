"""Command line: ``python -m compat table | starter | dbos-tests`` (``--help`` on each).

- ``table [--check] [--versions 3.4.0,2.31.1]``: regenerate ``compat/TABLE.md``, every API
  difference from dbos with its reason from ``compat/reasons.toml``.
- ``starter [--postgres URL]``: DBOS's own starter application, imports changed to perdure,
  killed with SIGKILL and restarted; its greeting counts must continue.
- ``dbos-tests [--version 3.4.0] [-k EXPR] [--timeout SEC] [--total-timeout SEC] [--sqlite]``:
  DBOS's own test suite run against Perdure through a ``dbos`` import shim; writes
  ``compat/DBOS_TESTS.md``.
"""

from __future__ import annotations

import argparse
import sys


def _versions(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    """Parse the command and run it; the exit code says whether it passed."""
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    table_parser = commands.add_parser("table", help="regenerate compat/TABLE.md")
    table_parser.add_argument(
        "--check", action="store_true", help="exit 1 if a difference is UNEXPLAINED"
    )
    table_parser.add_argument("--versions", type=_versions, default=("3.4.0", "2.31.1"))
    starter_parser = commands.add_parser("starter", help="run DBOS's starter app on Perdure")
    starter_parser.add_argument("--version", default="3.4.0", help="the dbos wheel to take it from")
    starter_parser.add_argument(
        "--postgres", metavar="URL", help="also run it on this fresh database"
    )
    tests = commands.add_parser("dbos-tests", help="run DBOS's test suite against Perdure")
    tests.add_argument("--version", default="3.4.0")
    tests.add_argument("-k", dest="keyword", help="pytest -k expression (a partial run)")
    tests.add_argument("--timeout", type=int, default=20, help="per-test timeout in seconds")
    tests.add_argument("paths", nargs="*", default=["tests"], help="test files (default: all)")
    tests.add_argument("--total-timeout", type=int, default=1800, help="whole run, in seconds")
    tests.add_argument("--sqlite", action="store_true", help="DBOS_DATABASE=SQLITE: SQLite files")
    tests.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the last run's results"
    )
    args = parser.parse_args(argv)

    # Imported per command: each pulls in only what it needs.
    if args.command == "table":
        from compat import table  # noqa: PLC0415

        return table.main(args.versions, check=args.check)
    if args.command == "starter":
        from compat import starter  # noqa: PLC0415

        return starter.main(args.version, postgres_url=args.postgres)
    from compat import dbos_tests  # noqa: PLC0415

    return dbos_tests.main(
        args.version,
        keyword=args.keyword,
        timeout=args.timeout,
        total_timeout=args.total_timeout,
        sqlite=args.sqlite,
        paths=args.paths,
        report_only=args.report_only,
    )


if __name__ == "__main__":
    sys.exit(main())
