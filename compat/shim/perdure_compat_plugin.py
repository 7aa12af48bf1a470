"""pytest plugin of ``python -m compat dbos-tests``: one JSON line per test phase and per
collection error, written to ``$PERDURE_COMPAT_RESULTS`` as it happens (a run stopped midway
still leaves its counts), and the running test's ID handed to the dbos shim."""

from __future__ import annotations

import builtins
import json
import os
from typing import Any

import pytest

# compat/shim is on PYTHONPATH only when python -m compat dbos-tests runs this plugin.
from dbos import _shim  # type: ignore[import-not-found]

# The real open, taken now: some DBOS tests patch builtins.open around the hooks below.
_open = builtins.open


def _write(entry: dict[str, Any]) -> None:
    path = os.environ.get("PERDURE_COMPAT_RESULTS")
    if not path:
        return
    try:
        with _open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
    except OSError:  # a hook that raises aborts the whole pytest session
        return


def _clean(nodeid: str) -> str:
    return nodeid.strip()  # DBOS's conftest wraps node IDs in newlines


def _message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(report.longrepr)[-2000:]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _shim.current_test = _clean(item.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry: dict[str, Any] = {
        "test": _clean(report.nodeid),
        "when": report.when,
        "outcome": report.outcome,
        "file": report.location[0],
        "seconds": round(report.duration, 3),
    }
    if hasattr(report, "wasxfail"):
        entry["xfail"] = True
    if report.failed:
        entry["message"] = _message(report)
    elif report.skipped and isinstance(report.longrepr, tuple):
        entry["message"] = str(report.longrepr[2])
    _write(entry)
    if report.when == "teardown":
        _shim.current_test = None


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"collect_error": _clean(report.nodeid), "message": str(report.longrepr)[-3000:]})


def pytest_collection_finish(session: pytest.Session) -> None:
    _write({"collected": [_clean(item.nodeid) for item in session.items]})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write({"exitstatus": int(exitstatus)})  # 3: pytest's internal error ended the session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Tells the runner pytest is done: a process whose leftover threads keep it alive after
    # this is killed instead of waited for.
    _write({"finished": True})
