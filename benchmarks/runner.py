"""Runs the worker subprocesses in a fair order and gathers their raw results.

Each repetition of a scenario is a new worker process on a new, empty database. Repetitions are
interleaved: round ``r`` measures the database floor, then every scenario once per
implementation, alternating which implementation goes first, so slow drifts of the machine
affect both alike. Scenarios (c), (d), (f) and (g) run once per implementation, after the
rounds ((c) once with 1 and once with 4 processes serving the queue; (d) and (f) take many
samples inside one worker), which keeps a full run near 15 minutes per backend: DBOS takes
about a minute per queue measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.databases import fresh_database, measure_floor

REPETITIONS = 3
REPEATED = ("a", "b", "e")  # one worker per repetition
ONCE = ("c", "d", "g", "f")  # one worker per implementation (c: per process count)
QUEUE_PROCESS_COUNTS = (1, 4)
WORKER_TIMEOUT_SEC = 3600
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RawResults:
    """Everything measured in one run, before summarising."""

    floor_ms: list[list[float]] = field(default_factory=list)
    # results[scenario][impl] = one result per repetition (None where the worker failed)
    results: dict[str, dict[str, list[dict[str, Any] | None]]] = field(default_factory=dict)

    def add(self, scenario: str, impl: str, result: dict[str, Any] | None) -> None:
        """Record one worker's result."""
        self.results.setdefault(scenario, {}).setdefault(impl, []).append(result)

    def of(self, scenario: str, impl: str) -> list[dict[str, Any]]:
        """The successful results of ``impl`` in ``scenario``."""
        return [r for r in self.results.get(scenario, {}).get(impl, []) if r is not None]

    def failed(self, scenario: str, impl: str) -> bool:
        """True if any worker of ``impl`` in ``scenario`` failed."""
        return any(r is None for r in self.results.get(scenario, {}).get(impl, []))


def _progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_worker(
    impl: str, scenario: str, db: str, quick: bool, processes: int = 1
) -> dict[str, Any] | None:
    """Run one worker on a fresh database; its JSON result, or None (stderr shown) on failure."""
    with fresh_database(db, impl) as url:
        command = [sys.executable, "-m", "benchmarks.worker", "--impl", impl]
        command += ["--scenario", scenario, "--url", url, "--processes", str(processes)]
        if quick:
            command.append("--quick")
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=WORKER_TIMEOUT_SEC,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _progress(f"  {impl} {scenario}: timed out after {WORKER_TIMEOUT_SEC}s")
            return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        _progress(f"  {impl} {scenario}: worker failed (exit {done.returncode}):")
        _progress("\n".join(done.stderr.splitlines()[-30:]))
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_all(db: str, impls: list[str], scenarios: list[str], quick: bool) -> RawResults:
    """Measure the floor and every requested scenario for every requested implementation."""
    raw = RawResults()
    for rep in range(REPETITIONS):
        _progress(f"round {rep + 1}/{REPETITIONS}: database floor")
        raw.floor_ms.append(measure_floor(db, count=500 if quick else 2000))
        order = impls if rep % 2 == 0 else list(reversed(impls))
        for scenario in (s for s in scenarios if s in REPEATED):
            for impl in order:
                _progress(f"round {rep + 1}/{REPETITIONS}: scenario {scenario}, {impl}")
                raw.add(scenario, impl, run_worker(impl, scenario, db, quick))
    for scenario in (s for s in ONCE if s in scenarios):
        if scenario == "f" and db != "postgres":
            _progress("scenario f runs on postgres only: skipped")
            continue
        counts = QUEUE_PROCESS_COUNTS if scenario == "c" else (1,)
        for processes in counts:
            for impl in impls:
                _progress(f"scenario {scenario}, {impl}, {processes} process(es)")
                raw.add(scenario, impl, run_worker(impl, scenario, db, quick, processes))
    return raw
