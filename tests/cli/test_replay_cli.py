"""``perdure replay`` and ``perdure workflow export``, run as subprocesses on both backends.

The application under test is `tests.cli.replay_apps`: version 1 records the workflows, then the
command imports a version (``--app``) and replays them against it. Its steps write to
``$SHOP_EFFECTS`` when they run: a replay must leave that file uncreated.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perdure import DBOS, SetWorkflowID
from tests.integration.test_replay import table_dump

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "perdure"
APPS = "tests.cli.replay_apps"


def perdure(*args: str, db: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``perdure [--db URL] ARGS`` from the repository root with ``env`` added."""
    environment = {k: v for k, v in os.environ.items() if k != "PERDURE_SYSTEM_DATABASE_URL"}
    environment.update(env)
    command = [str(SCRIPT), *(["--db", db] if db else []), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=environment, cwd=ROOT,
        check=False,
    )  # fmt: skip


@pytest.fixture
def shop(dbos: type[DBOS], db_url: str) -> str:
    """Two orders and a refund recorded by version 1 of the shop."""
    v1 = importlib.reload(importlib.import_module(f"{APPS}.shop_v1"))  # registered afresh
    for n in range(2):
        with SetWorkflowID(f"order-{n}"):
            v1.order(f"item-{n}")
    with SetWorkflowID("refund-0"):
        v1.refund("order-0")
    return db_url


def test_replay_exits_zero_when_the_code_takes_every_workflow(shop: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    before = table_dump(shop)
    for app in ("shop_v1", "shop_v2_patched"):
        result = perdure("replay", "--app", f"{APPS}.{app}", db=shop, SHOP_EFFECTS=str(effects))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == (
            "Replayed 3 workflow(s) against the current code: 3 same, 0 diverged, 0 failed."
        )
        assert any(line.startswith("SAME      refund-0  (shop.refund, SUCCESS)") for line in lines)
    assert not effects.exists()  # no step body ran
    assert table_dump(shop) == before  # and nothing was written


def test_replay_exits_one_and_says_where_the_code_diverges(shop: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    result = perdure("replay", "--app", f"{APPS}.shop_v2", db=shop, SHOP_EFFECTS=str(effects))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("2 same, 1 diverged, 0 failed.")
    assert lines[1].startswith("DIVERGED  refund-0  (shop.refund, SUCCESS)")
    assert lines[2].strip() == (
        "at position 2: the record has step 'pay', the code asked for step 'repay'"
    )

    as_json = perdure("replay", "--app", f"{APPS}.shop_v2", "--json", db=shop)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["replayed"], report["diverged"]) == (False, 3, 1)
    [diverged] = [w for w in report["workflows"] if w["verdict"] == "diverged"]
    assert diverged["divergence"]["expected"] == {"position": 2, "name": "pay", "kind": "step"}
    assert diverged["divergence"]["actual"] == {"position": 2, "name": "repay", "kind": "step"}
    only_orders = perdure("replay", "--app", f"{APPS}.shop_v2", "--name", "shop.order", db=shop)
    assert only_orders.returncode == 0, only_orders.stdout
    assert not effects.exists()


def test_an_export_replays_without_the_database(shop: str, tmp_path: Path) -> None:
    path = tmp_path / "histories.json"
    exported = perdure("workflow", "export", "--status", "success", "-o", str(path), db=shop)
    assert exported.returncode == 0, exported.stderr
    assert "Exported 3 workflow(s)" in exported.stderr
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == ("perdure.workflow-export", 1)
    assert [len(w["operations"]) for w in document["workflows"]] == [2, 3, 3]

    same = perdure("replay", "--app", f"{APPS}.shop_v1", "--from", str(path))
    assert same.returncode == 0, same.stderr + same.stdout
    diverged = perdure("replay", "--app", f"{APPS}.shop_v2", "--from", str(path), "--limit", "1")
    assert diverged.returncode == 1, diverged.stderr
    assert "DIVERGED  refund-0" in diverged.stdout  # the newest first

    to_stdout = perdure("workflow", "export", "--id", "order-0", db=shop)
    assert [w["status"]["workflow_id"] for w in json.loads(to_stdout.stdout)["workflows"]] == [
        "order-0"
    ]


def test_replay_needs_the_application_and_refuses_one_that_launches(shop: str) -> None:
    missing = perdure("replay", db=shop)
    assert missing.returncode == 1
    assert "--app MODULE" in missing.stderr
    unknown = perdure("replay", "--app", "no_such_module_here", db=shop)
    assert unknown.returncode == 1
    assert "Cannot import application module 'no_such_module_here'" in unknown.stderr
    launching = perdure("replay", "--app", f"{APPS}.launches", db=shop, LAUNCHES_URL=shop)
    assert launching.returncode == 1
    assert "launched Perdure" in launching.stderr
    bad_file = perdure("replay", "--app", f"{APPS}.shop_v1", "--from", __file__)
    assert bad_file.returncode == 1
    assert "Cannot read workflow export" in bad_file.stderr
