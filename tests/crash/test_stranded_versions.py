"""A deploy with two application versions: the old version's process dies with orders in flight,
the new version's process cannot take them; `perdure workflow stranded` lists them with the
reason, and `perdure workflow move` puts them on the new version, refused while the current
code diverges from their record unless forced. Real processes, both backends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perdure import DBOSClient
from tests.crash.harness import Programs, Witness, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "perdure"
SHOP = "tests.crash.programs.versioned_shop"
RENAMED = "tests.crash.programs.versioned_shop_renamed"
WAIT_SEC = 60.0


def perdure(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``perdure --db URL ARGS`` from the repository root (where ``--app`` modules are)."""
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_SYSTEM_DATABASE_URL"}
    return subprocess.run(
        [str(SCRIPT), "--db", url, *args], capture_output=True, text=True, timeout=120,
        env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def stranded(url: str, *args: str) -> dict[str, dict[str, object]]:
    result = perdure(url, "workflow", "stranded", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {w["workflow_id"]: w for w in json.loads(result.stdout)}


def test_stranded_workflows_are_listed_and_moved_onto_the_new_version(
    witness: Witness, programs: Programs
) -> None:
    url = witness.db.url
    old = programs.start("versioned_shop", *witness.argv, "v1", "start")
    wait_until(
        lambda: witness.milestones.count("charging") == 2, what="both orders charging",
        watch=[old], timeout=WAIT_SEC,
    )  # fmt: skip
    old.kill()
    new = programs.start("versioned_shop", *witness.argv, "v2", "serve")
    wait_until(
        lambda: witness.milestones.count("serving") == 1, what="v2 serving", watch=[new],
        timeout=WAIT_SEC,
    )  # fmt: skip
    client = DBOSClient(system_database_url=url)
    try:  # a workflow of the new version whose function it no longer has
        client.enqueue(
            {"workflow_name": "shop.gone", "queue_name": "q", "app_version": "v2",
             "workflow_id": "gone-1"}
        )  # fmt: skip
    finally:
        client.destroy()

    found = stranded(url)
    assert set(found) == {"order-1", "order-2", "gone-1"}
    assert found["order-1"]["cause"] == "version_not_served"
    assert found["order-1"]["reason"] == "no live process serves version 'v1' (live versions: 'v2')"
    assert found["gone-1"]["cause"] == "function_not_registered"
    assert (
        found["gone-1"]["reason"]
        == "no live process of version 'v2' registers workflow 'shop.gone'"
    )
    table = perdure(url, "workflow", "stranded", "--app", SHOP)
    assert table.returncode == 0, table.stderr
    [order_line] = [line for line in table.stdout.splitlines() if line.startswith("order-1")]
    assert "can take it (1 operation(s) replayed)" in order_line

    # A safe move: the current code takes the record, so order-1 goes on to v2 and finishes.
    moved = perdure(url, "workflow", "move", "order-1", "--app", SHOP, "--to-version", "v2")
    assert moved.returncode == 0, moved.stderr
    assert "Moved workflow order-1 from version 'v1' to 'v2'" in moved.stdout
    wait_until(lambda: witness.status("order-1") == "SUCCESS", what="order-1 done", watch=[new],
               timeout=WAIT_SEC)  # fmt: skip

    # Code that diverges from order-2's record is refused, unless forced.
    refused = perdure(url, "workflow", "move", "order-2", "--app", RENAMED, "--to-version", "v2")
    assert refused.returncode == 1
    assert "was not moved to version 'v2'" in refused.stderr
    assert "the record has step 'reserve', the code asked for step 'reserve_stock'" in (
        refused.stderr
    )
    assert witness.status("order-2") == "PENDING"
    assert set(stranded(url)) == {"order-2", "gone-1"}
    forced = perdure(
        url, "workflow", "move", "order-2", "--app", RENAMED, "--to-version", "v2", "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert "FORCED: its replay diverged" in forced.stdout
    wait_until(lambda: witness.status("order-2") == "SUCCESS", what="order-2 done", watch=[new],
               timeout=WAIT_SEC)  # fmt: skip

    assert set(stranded(url)) == {"gone-1"}
    counts = witness.effects.counts()
    for order in ("order-1", "order-2"):
        assert counts[f"reserve:{order}"] == 1  # recorded by v1: never run again
        assert counts[f"charge:{order}"] == 2  # in flight when v1 died: run again by v2
        assert counts[f"ship:{order}"] == 1
