"""One implementation, one scenario, one fresh database: the subprocess the runner starts.

``python -m benchmarks.worker --impl perdure|dbos --scenario a..g --url URL [--processes N]
[--quick]``
imports either ``perdure`` or ``dbos`` (the same API), registers the benchmark workflows,
launches, measures, and writes one JSON object on stdout. Anything else either library prints
goes to stderr, which the runner shows only if the worker fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import traceback
from importlib import metadata
from typing import Any, TextIO

from benchmarks import history, queueing, wakeup, workloads

IMPLS = ("perdure", "dbos")
SCENARIOS = ("a", "b", "c", "d", "e", "f", "g")


def _journal_mode(url: str) -> str | None:
    """How the implementation left its SQLite file (``wal``, ``delete``...), else None."""
    if not url.startswith("sqlite:///"):
        return None
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        row = conn.execute("PRAGMA journal_mode").fetchone()
        return str(row[0]) if row else None
    finally:
        conn.close()


def _measure(  # noqa: PLR0911 - one return per scenario
    api: Any,
    wfs: workloads.Workflows,
    queue: Any,
    *,
    impl: str,
    url: str,
    scenario: str,
    processes: int,
    quick: bool,
) -> dict[str, Any]:
    pick = 1 if quick else 0
    if scenario == "a":
        return {"samples_ms": workloads.sync_latencies(wfs, workloads.LATENCY_ITERATIONS[pick])}
    if scenario == "b":
        return workloads.throughput(api, wfs, workloads.THROUGHPUT_WORKFLOWS[pick])
    if scenario == "c":
        return queueing.queue_throughput(impl, url, queue, wfs, processes=processes, quick=quick)
    if scenario == "d":
        return wakeup.wakeups(api, impl, url, wfs, quick)
    if scenario == "e":
        return {"samples_ms": workloads.async_latencies(wfs, workloads.ASYNC_ITERATIONS[pick])}
    if scenario == "f":
        return history.scale(api, impl, url, wfs, quick)
    if scenario == "g":
        return workloads.memory(wfs, workloads.MEMORY_WORKFLOWS[pick])
    raise ValueError(f"unknown scenario {scenario!r}")


def run(impl: str, scenario: str, url: str, *, processes: int, quick: bool, out: TextIO) -> None:
    """Launch ``impl`` on ``url``, measure ``scenario``, write the JSON result to ``out``."""
    api, wfs, queue = workloads.launch(impl, url, queue=scenario == "c")
    result = _measure(
        api,
        wfs,
        queue,
        impl=impl,
        url=url,
        scenario=scenario,
        processes=processes,
        quick=quick,
    )
    result.update(
        impl=impl,
        scenario=scenario,
        version=metadata.version(impl),
        sqlite_journal_mode=_journal_mode(url),
    )
    out.write(json.dumps(result) + "\n")
    out.flush()
    api.DBOS.destroy()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run; the JSON goes to the real stdout only."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--url", required=True, help="system database URL (a fresh database)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="(c): processes serving the queue, this one included",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the libraries print must not corrupt the JSON
    code = 0
    try:
        run(args.impl, args.scenario, args.url, processes=args.processes, quick=args.quick, out=out)
    except BaseException:  # noqa: BLE001 - reported on stderr; the exit code tells the runner
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    # Do not wait for library threads that outlive destroy(): the result is already written.
    os._exit(code)


if __name__ == "__main__":
    main()
