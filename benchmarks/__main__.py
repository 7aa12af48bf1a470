"""Command line: ``python -m benchmarks run --db sqlite|postgres --impl perdure|dbos|both``.

Options: ``--scenarios a,b,...`` (default ``a,b,c,d,e,g``; ``f`` only when asked, PostgreSQL
only, slow), ``--quick`` (smaller counts, for a smoke run), ``--json out.json`` (the full record,
raw samples included). Progress goes to stderr; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import databases, report, runner, summary
from benchmarks.stats import Figure, across_reps, percentile

DEFAULT_SCENARIOS = "a,b,c,d,e,g"
ALL_SCENARIOS = "abcdefg"


def _scenarios(text: str) -> list[str]:
    chosen = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ALL_SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from a..g")
    return sorted(set(chosen))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return None


def _perdure_source() -> str:
    """Which Perdure is measured: ``git describe`` of its checkout, or where it is installed."""
    spec = importlib.util.find_spec("perdure")
    if spec is None or spec.origin is None:
        return "not installed"
    folder = Path(spec.origin).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH is fine here
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        )
        return f"git {rev.stdout.strip()} ({folder})"
    except (OSError, subprocess.CalledProcessError):
        return f"installed copy at {folder}"


def _meta(args: argparse.Namespace, raw: runner.RawResults) -> dict[str, Any]:
    versions = {
        impl: result["version"]
        for per_impl in raw.results.values()
        for impl, results in per_impl.items()
        for result in results
        if result is not None
    }
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "db": args.db,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "perdure_source": _perdure_source(),
        "versions": versions,
    }
    if args.db == "postgres":
        meta["server"] = databases.server_version()
    if args.db == "sqlite":
        meta["sqlite_journal_modes"] = {
            impl: result.get("sqlite_journal_mode")
            for per_impl in raw.results.values()
            for impl, results in per_impl.items()
            for result in results
            if result is not None
        }
    return meta


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _disturbed_rounds(floor_ms: list[list[float]]) -> list[str]:
    """Warnings for rounds whose floor p50 is over twice the median round's (a noisy disk)."""
    p50s = [percentile(rep, 50) for rep in floor_ms]
    typical = statistics.median(p50s)
    return [
        f"# WARNING: round {i + 1}: floor p50 {p50:.3f} ms is {p50 / typical:.1f}x the median "
        "round's; the machine was disturbed then (the medians below discount one such round)"
        for i, p50 in enumerate(p50s)
        if p50 > 2 * typical
    ]


def render(meta: dict[str, Any], raw: runner.RawResults) -> tuple[list[str], dict[str, Figure]]:
    """The printed report of a run, and the floor figures."""
    impls, scenarios, db = meta["impls"], meta["scenarios"], meta["db"]
    floor = {f"p{q}": across_reps(raw.floor_ms, q) for q in (50, 90, 99)}
    rows = summary.build_rows(raw, impls, scenarios, db)
    floor_how = (
        "psycopg 3, autocommit, prepared, same server"
        if db == "postgres"
        else "sqlite3, WAL, synchronous=FULL"
    )
    lines = [
        f"# {meta['command']}",
        f"# {meta['date']}; {meta['cpus']} CPUs ({meta['cpu_model']}); python {meta['python']}",
        f"# versions: {meta['versions']}; perdure: {meta.get('perdure_source')}",
    ]
    if "load_average" in meta:
        before, after = meta["load_average"]["before"], meta["load_average"]["after"]
        lines.append(
            f"# load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in before)}; "
            f"after: {', '.join(f'{x:.2f}' for x in after)} (other work on the machine shows here)"
        )
    if "server" in meta:
        lines.append(f"# server: {meta['server']}")
    if "sqlite_journal_modes" in meta:
        lines.append(
            f"# sqlite journal_mode left by each implementation: {meta['sqlite_journal_modes']}"
        )
    lines.append(
        f"# database floor, single-row INSERT + COMMIT ({floor_how}): "
        + ", ".join(f"{q} {report.format_cell(fig, 'ms')} ms" for q, fig in floor.items())
    )
    lines.append(
        f"# each figure: median of {len(raw.floor_ms)} repetitions [min..max across them]; "
        "ratio > 1 means perdure is better"
    )
    lines += _disturbed_rounds(raw.floor_ms)
    lines.append("")
    lines += report.table_lines(rows, floor["p50"].value)
    return lines, floor


def run(args: argparse.Namespace) -> None:
    """Measure, then print the table (and write the JSON record if asked)."""
    impls = ["perdure", "dbos"] if args.impl == "both" else [args.impl]
    missing = [impl for impl in impls if importlib.util.find_spec(impl) is None]
    if missing:
        sys.exit(
            f"{', '.join(missing)} is not installed in this interpreter: "
            "pip install -e '.[bench]' (DBOS Transact 3.4 comes with the bench extra)."
        )
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    raw = runner.run_all(args.db, impls, args.scenarios, args.quick)
    meta = _meta(args, raw)
    meta["load_average"] = {"before": load_before, "after": os.getloadavg()}
    meta["date"] = started
    meta.update(impls=impls, scenarios=args.scenarios)
    lines, floor = render(meta, raw)
    for line in lines:
        _print(line)
    if args.json:
        rows = summary.build_rows(raw, impls, args.scenarios, args.db)
        raw_record = {"floor_ms": raw.floor_ms, "results": raw.results}
        report.write_json(Path(args.json), meta, floor, rows, raw_record)
        sys.stderr.write(f"JSON record written to {args.json}\n")


def show(args: argparse.Namespace) -> None:
    """Print the table of a run saved with ``--json`` again (with the current summary code)."""
    record = json.loads(Path(args.path).read_text(encoding="utf-8"))
    raw = runner.RawResults(floor_ms=record["raw"]["floor_ms"], results=record["raw"]["results"])
    for line in render(record["meta"], raw)[0]:
        _print(line)


def main(argv: list[str] | None = None) -> None:
    """Parse ``run ...`` or ``show ...`` and do it."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the benchmarks and print the table")
    run_parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    run_parser.add_argument("--impl", choices=("perdure", "dbos", "both"), default="both")
    run_parser.add_argument(
        "--scenarios",
        type=_scenarios,
        default=_scenarios(DEFAULT_SCENARIOS),
        help=f"comma-separated, from a..g (default {DEFAULT_SCENARIOS}; f only when asked)",
    )
    run_parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    run_parser.add_argument("--json", metavar="PATH", help="also write the full record as JSON")
    show_parser = commands.add_parser("show", help="print the table of a saved JSON record")
    show_parser.add_argument("path", help="a file written by run --json")
    args = parser.parse_args(argv)
    if args.command == "show":
        show(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
