"""Two builds of Perdure side by side, in one run: what a change costs.

``python -m benchmarks.builds --baseline PYTHON --candidate PYTHON [--db postgres|sqlite]
[--scenarios a,b,d] [--rounds 3] [--quick] [--json PATH]``

Each interpreter is a virtual environment with one build of Perdure installed (for example
``git archive <commit>`` of the old and the new commit, each ``pip install``-ed into its own
venv). Every measurement is a worker process (`benchmarks.worker`, ``--impl perdure``) of one
build on a new, empty database, exactly as in ``python -m benchmarks run``. Rounds alternate
which build goes first, so a slow drift of the machine affects both alike. The table gives
each figure for both builds and the candidate's change: ``+5.0%`` means 5% slower (latency)
or 5% more work done (throughput).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.databases import fresh_database
from benchmarks.runner import ROOT, WORKER_TIMEOUT_SEC
from benchmarks.stats import Figure
from benchmarks.summary import MEASURED

BUILDS = ("baseline", "candidate")


def run_worker(python: str, scenario: str, db: str, quick: bool) -> dict[str, Any] | None:
    """One measurement of one build; its JSON result, or None (stderr shown) on failure."""
    with fresh_database(db, "build") as url:
        command = [python, "-m", "benchmarks.worker", "--impl", "perdure"]
        command += ["--scenario", scenario, "--url", url]
        if quick:
            command.append("--quick")
        done = subprocess.run(  # noqa: S603 - interpreters the user named, no shell
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_SEC,
            check=False,
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        sys.stderr.write(f"  {python} {scenario}: worker failed (exit {done.returncode}):\n")
        sys.stderr.write("\n".join(done.stderr.splitlines()[-30:]) + "\n")
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(
    pythons: dict[str, str], scenarios: list[str], db: str, rounds: int, quick: bool
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """results[scenario][build]: one result per round."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_index in range(rounds):
        order = BUILDS if round_index % 2 == 0 else tuple(reversed(BUILDS))
        for scenario in scenarios:
            for build in order:
                sys.stderr.write(f"round {round_index + 1}/{rounds}: {scenario}, {build}\n")
                result = run_worker(pythons[build], scenario, db, quick)
                if result is not None:
                    results.setdefault(scenario, {}).setdefault(build, []).append(result)
    return results


def _change(kind: str, baseline: float, candidate: float) -> str:
    if baseline == 0:
        return ""
    change = (candidate - baseline) / baseline * 100
    if kind == "throughput":
        return f"{change:+.1f}% ({'more' if change >= 0 else 'less'})"
    return f"{change:+.1f}% ({'slower' if change >= 0 else 'faster'})"


def _cell(figure: Figure | str) -> str:
    if isinstance(figure, str):
        return figure
    spread = f" [{figure.low:.3f}..{figure.high:.3f}]" if figure.low is not None else ""
    return f"{figure.value:.3f}{spread}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """One line per figure: metric, unit, baseline, candidate, change."""
    lines = ["| scenario | metric | unit | baseline | candidate | change |", "|---" * 6 + "|"]
    for scenario in sorted(results):
        per_build = results[scenario]
        if not all(per_build.get(b) for b in BUILDS):
            lines.append(f"| ({scenario}) | a worker failed | | | | |")
            continue
        # Scenario (d) measures once per worker; with several rounds, the samples of all
        # rounds are pooled into one worker-like result.
        if scenario == "d":
            per_build = {b: [_pooled(per_build[b])] for b in BUILDS}
        entries = {b: MEASURED[scenario](per_build[b]) for b in BUILDS}
        for base, cand in zip(entries["baseline"], entries["candidate"], strict=True):
            metric, unit, kind, base_figure = base
            cand_figure = cand[3]
            change = ""
            if isinstance(base_figure, Figure) and isinstance(cand_figure, Figure):
                change = _change(kind, base_figure.value, cand_figure.value)
            lines.append(
                f"| ({scenario}) | {metric} | {unit} | {_cell(base_figure)} | "
                f"{_cell(cand_figure)} | {change} |"
            )
    return lines


def _pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {}
    for result in results:
        for key, values in result["samples_ms"].items():
            samples.setdefault(key, []).extend(values)
    return {**results[0], "samples_ms": samples}


def main(argv: list[str] | None = None) -> None:
    """Parse the options, measure both builds, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.builds", description=__doc__)
    parser.add_argument("--baseline", required=True, help="python of the venv of the old build")
    parser.add_argument("--candidate", required=True, help="python of the venv of the new build")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--scenarios", default="a,b,d", help="comma-separated, from a..g")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    args = parser.parse_args(argv)
    pythons = {"baseline": args.baseline, "candidate": args.candidate}
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results = measure(pythons, scenarios, args.db, args.rounds, args.quick)
    out = sys.stdout  # the table is this program's output
    out.write(f"{args.db}, {args.rounds} rounds; baseline {args.baseline}, ")
    out.write(f"candidate {args.candidate}\n")
    for line in table(results):
        out.write(line + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": vars(args), "results": results}))


if __name__ == "__main__":
    main()
