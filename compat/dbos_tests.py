"""``python -m compat dbos-tests``: DBOS's own test suite, run against Perdure.

Downloads the dbos source release from PyPI, extracts its ``tests/`` into the cache (never its
``dbos/`` package), and runs pytest on them in the cache's ``perdure`` virtualenv (no dbos
installed) with ``compat/shim`` first on ``PYTHONPATH``, so ``import dbos`` is Perdure (see
``compat/shim/dbos``). Each test is then classified:

- passed, skipped;
- uses-internals: it failed, and it reaches into DBOS internals Perdure need not mirror
  (read from its source by ``test_usage.py``, or seen at run time by the shim's stand-ins);
- missing-public-api: it failed on a public dbos name Perdure does not export;
- failed / error: a public-API test that fails (in its body / in setup or teardown);
- not-run: collected but not reached (a run stopped by ``--total-timeout``).

The counts and every failing public-API test, with its reason from ``reasons.toml``
(``dbos-test:<test id pattern>``) or UNEXPLAINED, go to ``compat/DBOS_TESTS.md``; the command
exits 1 while a failing public-API test has no reason (or the run was cut short). DBOS's
conftest expects PostgreSQL at ``localhost:5432`` (user postgres, password ``$PGPASSWORD`` or
"dbos"); ``--sqlite`` runs it on SQLite files instead (``DBOS_DATABASE=SQLITE``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat import venvs
from compat.table import Reason, load_reasons, match
from compat.test_usage import internal_tests

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim"
REPORT = HERE / "DBOS_TESTS.md"
PYTEST_INI = """[pytest]
# Written by python -m compat dbos-tests: DBOS's own pytest settings (log_cli, -s) are left out.
asyncio_default_fixture_loop_scope = function
"""
CLASSES = (
    "passed",
    "skipped",
    "uses-internals",
    "missing-public-api",
    "failed",
    "error",
    "not-run",
)
FAILING_PUBLIC = ("missing-public-api", "failed", "error")


@dataclass
class Outcome:
    """One test's result and class."""

    test: str
    file: str
    result: str = "not-run"
    message: str = ""
    internal: str | None = None
    public_missing: str | None = None

    @property
    def klass(self) -> str:
        if self.result in ("passed", "skipped", "not-run"):
            return self.result
        if self.internal:
            return "uses-internals"
        if self.public_missing:
            return "missing-public-api"
        return self.result


def extract_tests(version: str) -> Path:
    """``tests/`` of the source release, under the cache (extracted once); its parent folder."""
    folder = venvs.cache_dir() / f"dbos-tests-{version}"
    if not (folder / "tests" / "conftest.py").exists():
        sdist = venvs.download(version, source=True)
        prefix = f"dbos-{version}/tests/"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name[len(f"dbos-{version}/") :]
            archive.extractall(folder, members=members, filter="data")
    # A pytest.ini of our own: pytest must not climb to Perdure's pyproject.toml.
    (folder / "pytest.ini").write_text(PYTEST_INI)
    return folder


def _mirrored(module: str, name: str) -> bool:
    """Whether the shim maps ``from <module> import <name>`` to a Perdure object."""
    import perdure  # noqa: PLC0415 - only when classifying
    import perdure._error  # noqa: PLC0415

    if module == "dbos._error":
        return hasattr(perdure._error, name)
    return module.startswith("dbos._") and name in perdure.__all__


def run_pytest(
    folder: Path,
    run_dir: Path,
    *,
    paths: list[str],
    keyword: str | None,
    timeout: int,
    total_timeout: int,
    sqlite: bool,
) -> tuple[bool, float]:
    """Run the suite; (stopped by the total timeout, seconds taken). Results stream to files
    in ``run_dir``, one folder per run, so runs at the same time do not mix."""
    python = str(venvs.perdure_python())
    run_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SHIM), str(folder)]),
        "PERDURE_COMPAT_RESULTS": str(run_dir / "results.jsonl"),
        "PERDURE_COMPAT_RECORD": str(run_dir / "record.jsonl"),
    }
    if sqlite:
        env["DBOS_DATABASE"] = "SQLITE"
    command = [python, "-m", "pytest", *paths, "-p", "perdure_compat_plugin"]
    command += ["-p", "no:cacheprovider", f"--timeout={timeout}", "-q", "-rN"]
    # --tb=line: pytest formats a failure without parsing its source, which on CPython 3.11
    # can fail (SystemError: AST constructor recursion depth mismatch) while threads a test
    # left running parse source too, aborting the whole session.
    command += ["--continue-on-collection-errors", "--tb=line"]
    if keyword:
        command += ["-k", keyword]
    log = run_dir / "pytest.log"
    started = time.monotonic()
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our venv's pytest
            command,
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stopped = not _wait(process, run_dir / "results.jsonl", started + total_timeout)
    return stopped, time.monotonic() - started


def _finished(results: Path) -> bool:
    return results.exists() and '"finished": true' in results.read_text()[-200:]


def _wait(process: subprocess.Popen[bytes], results: Path, deadline: float) -> bool:
    """Wait for pytest; kill it at the deadline, or 30 s after it reported the end of its
    session (leftover threads can keep the interpreter alive). Whether it finished."""
    finished_at: float | None = None
    while process.poll() is None:
        now = time.monotonic()
        if finished_at is None and _finished(results):
            finished_at = now
        if now > deadline or (finished_at is not None and now > finished_at + 30):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            break
        time.sleep(2)
    return _finished(results)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the last line of a killed run may be cut
    return entries


def _function_id(test: str) -> str:
    return test.split("[", 1)[0]


def classify(run_dir: Path, tests: Path) -> tuple[dict[str, Outcome], list[dict[str, Any]]]:
    """Each collected test's outcome, and the collection errors."""
    results = _read_jsonl(run_dir / "results.jsonl")
    static = internal_tests(tests, _mirrored)
    outcomes: dict[str, Outcome] = {}
    errors = [entry for entry in results if "collect_error" in entry]
    for entry in results:
        for test in entry.get("collected", []):
            outcomes[test] = Outcome(test=test, file=test.split("::", 1)[0])
    for entry in results:
        if "test" not in entry:
            continue
        outcome = outcomes.setdefault(
            entry["test"], Outcome(test=entry["test"], file=entry["file"])
        )
        _merge(outcome, entry)
    for record in _read_jsonl(run_dir / "record.jsonl"):
        used_by = outcomes.get(record.get("test") or "")
        if used_by is None:
            continue
        if record["kind"] == "internal":
            used_by.internal = used_by.internal or f"{record['name']} (at run time)"
        else:
            used_by.public_missing = used_by.public_missing or record["name"]
    for outcome in outcomes.values():
        why = static.get(_function_id(outcome.test))
        if why and not outcome.internal:
            outcome.internal = why
    return outcomes, errors


def _merge(outcome: Outcome, entry: dict[str, Any]) -> None:
    """Fold one phase report (setup, call, teardown) into the test's outcome."""
    when, result = entry["when"], entry["outcome"]
    if result == "failed":
        if outcome.result not in ("failed", "error"):
            outcome.result = "failed" if when == "call" else "error"
            outcome.message = entry.get("message", "")
    elif result == "skipped" and outcome.result == "not-run":
        outcome.result = "skipped"
        outcome.message = entry.get("message", "")
    elif result == "passed" and when == "call" and outcome.result == "not-run":
        outcome.result = "skipped" if entry.get("xfail") else "passed"


def _first_line(message: str, width: int = 160) -> str:
    lines = [part.strip() for part in message.splitlines() if part.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    line = errors[-1] if errors else next(iter(lines), "")
    line = line.replace("|", "\\|")
    return line if len(line) <= width else line[: width - 3] + "..."


def _test_reasons() -> list[Reason]:
    return [r for r in load_reasons() if r.key.startswith("dbos-test:")]


def render(
    outcomes: dict[str, Outcome],
    errors: list[dict[str, Any]],
    *,
    version: str,
    stopped: bool,
    seconds: float,
    backend: str,
    exitstatus: int | None,
) -> str:
    """The Markdown of DBOS_TESTS.md."""
    counts = Counter(o.klass for o in outcomes.values())
    public = sum(counts[k] for k in ("passed", *FAILING_PUBLIC))
    lines = [
        f"# DBOS Transact {version}'s own test suite, run against Perdure",
        "",
        "Generated by `python -m compat dbos-tests` (see `compat/dbos_tests.py` for how tests",
        "are classified). DBOS's `tests/` from its PyPI source release, `import dbos` served by",
        f"Perdure through `compat/shim`; backend {backend}; {seconds / 60:.0f} minutes"
        + (", **stopped by the total timeout: a partial run**." if stopped else "."),
        "",
        "| class | tests |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {counts.get(k, 0)} |" for k in CLASSES]
    lines += [f"| total collected | {len(outcomes)} |", ""]
    if counts.get("not-run"):
        lines += [
            f"**{counts['not-run']} collected tests did not run**: the session ended early "
            f"(pytest exit status {exitstatus}; 3 is an internal error, none a kill).",
            "",
        ]
    if public:
        lines.append(
            f"Of the {public} tests that ran and use only DBOS's public API, {counts['passed']} "
            f"pass ({100 * counts['passed'] / public:.0f}%)."
        )
        left = len(unexplained(outcomes))
        failing = public - counts["passed"]
        lines.append(
            f"{failing - left} of the {failing} failing ones have a reason (a `dbos-test:` key "
            f"in `compat/reasons.toml`); {left} are UNEXPLAINED."
        )
    if errors:
        lines.append(f"{len(errors)} test file(s) could not be collected (listed below).")
    lines += ["", "## Per file", "", "| file | " + " | ".join(CLASSES) + " |"]
    lines.append("| --- " * (len(CLASSES) + 1) + "|")
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in outcomes.values():
        per_file[outcome.file][outcome.klass] += 1
    for file in sorted(per_file):
        row = " | ".join(str(per_file[file].get(k, 0)) for k in CLASSES)
        lines.append(f"| {file} | {row} |")
    lines += _failure_sections(outcomes, errors)
    return "\n".join(lines) + "\n"


def _failure_sections(outcomes: dict[str, Outcome], errors: list[dict[str, Any]]) -> list[str]:
    failing = sorted(
        (o for o in outcomes.values() if o.klass in FAILING_PUBLIC), key=lambda o: o.test
    )
    internal = Counter(
        (o.internal or "").split(" (")[0] for o in outcomes.values() if o.klass == "uses-internals"
    )
    reasons = _test_reasons()
    by_message = Counter(_first_line(o.message, 100) for o in failing)
    lines = ["", "## Failing public-API tests by first line of the failure", ""]
    lines += ["| tests | failure |", "| --- | --- |"]
    lines += [f"| {n} | {m or '(no message)'} |" for m, n in by_message.most_common()]
    lines += ["", "## Failing public-API tests", "", "| test | class | failure | reason |"]
    lines.append("| --- | --- | --- | --- |")
    for outcome in failing:
        reason = match(f"dbos-test:{outcome.test}", reasons)
        text = f"{reason.rank}: {reason.reason}" if reason else "UNEXPLAINED"
        detail = outcome.public_missing or _first_line(outcome.message)
        lines.append(f"| `{outcome.test}` | {outcome.klass} | {detail} | {text} |")
    lines += ["", "## Internals the failing uses-internals tests reach for (most common)", ""]
    lines += ["| internal | tests |", "| --- | --- |"]
    lines += [f"| `{name}` | {n} |" for name, n in internal.most_common(40)]
    if errors:
        lines += ["", "## Collection errors", ""]
        for entry in errors:
            reason = match(f"dbos-test:{entry['collect_error']}::*", reasons)
            why = f" ({reason.rank}: {reason.reason})" if reason else " (UNEXPLAINED)"
            lines.append(f"- `{entry['collect_error']}`: {_first_line(entry['message'])}{why}")
    return lines


def unexplained(outcomes: dict[str, Outcome]) -> list[Outcome]:
    """Failing public-API tests that no ``dbos-test:`` reason covers."""
    reasons = _test_reasons()
    return [
        o
        for o in outcomes.values()
        if o.klass in FAILING_PUBLIC and match(f"dbos-test:{o.test}", reasons) is None
    ]


def main(
    version: str,
    *,
    keyword: str | None,
    timeout: int,
    total_timeout: int,
    sqlite: bool,
    paths: list[str],
    report_only: bool = False,
) -> int:
    """Extract, run, classify, report; exit 0 when every public-API test that ran passed."""
    folder = extract_tests(version)
    latest = folder / "latest-run"
    if report_only:
        run_dir = Path(latest.read_text().strip())
        stopped, seconds = json.loads((run_dir / "run.json").read_text())
    else:
        run_dir = folder / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        stopped, seconds = run_pytest(
            folder,
            run_dir,
            paths=paths,
            keyword=keyword,
            timeout=timeout,
            total_timeout=total_timeout,
            sqlite=sqlite,
        )
        (run_dir / "run.json").write_text(json.dumps([stopped, seconds]))
        latest.write_text(f"{run_dir}\n")
    outcomes, errors = classify(run_dir, folder / "tests")
    backend = "SQLite" if sqlite else "PostgreSQL"
    statuses = [
        e["exitstatus"] for e in _read_jsonl(run_dir / "results.jsonl") if "exitstatus" in e
    ]
    REPORT.write_text(
        render(
            outcomes,
            errors,
            version=version,
            stopped=stopped,
            seconds=seconds,
            backend=backend,
            exitstatus=statuses[-1] if statuses else None,
        )
    )
    counts = Counter(o.klass for o in outcomes.values())
    summary = ", ".join(f"{k} {counts.get(k, 0)}" for k in CLASSES)
    sys.stdout.write(
        f"{REPORT}: {len(outcomes)} tests ({summary}); {len(errors)} collection error(s)"
        f"{'; PARTIAL (total timeout)' if stopped else ''}; log: {run_dir / 'pytest.log'}\n"
    )
    left = unexplained(outcomes)
    sys.stdout.write(f"{len(left)} failing public-API test(s) without a reason\n")
    return 1 if left or stopped or counts.get("not-run") else 0
