"""The replay checker on both backends: recorded workflows re-executed against changed code.

Each test records workflows with one version of the code, then registers another version under
the same names (as a deploy would) and replays: the report names exactly the workflows that
diverge, and where; no step body runs, and no row of the system database changes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.testing.histories import load_histories, write_export
from perdure.testing.replay import replay
from perdure.testing.verdicts import ReplayReport
from tests.fixtures.app import wait_until
from tests.integration.system_tables import run_sql

Effects = list[str]


def table_dump(db_url: str) -> dict[str, list[str]]:
    """Every row of every Perdure table, as text, sorted: equal dumps mean nothing changed."""
    if db_url.startswith("sqlite"):
        query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    else:
        query = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'perdure' "
            "ORDER BY table_name"
        )
    tables = [row[0] for row in run_sql(db_url, query)]
    assert "workflow_status" in tables
    return {
        t: sorted(repr(tuple(r)) for r in run_sql(db_url, f"SELECT * FROM {{p}}{t}"))
        for t in tables
    }


def steps(effects: Effects, *names: str) -> list[Callable[[int], int]]:
    """One step per name: each records that its body ran, and adds one."""

    def make(step_name: str) -> Callable[[int], int]:
        @DBOS.step(name=step_name)
        def step(value: int) -> int:
            effects.append(step_name)
            return value + 1

        return step

    return [make(n) for n in names]


def run(workflow: Callable[..., Any], workflow_id: str, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return workflow(*args)


def divergences(report: ReplayReport) -> dict[str, tuple[int, str, str | None, str | None]]:
    """Each diverged workflow: (position, kind, recorded name, requested name)."""
    found = {}
    for r in report.diverged:
        d = r.divergence
        assert d is not None
        expected = d.expected.name if d.expected else None
        actual = d.actual.name if d.actual else None
        found[r.workflow_id] = (d.position, d.kind, expected, actual)
    return found


def test_unchanged_code_replays_the_same_without_running_a_step_or_writing(
    dbos: type[DBOS], db_url: str
) -> None:
    effects: Effects = []
    reserve, charge, ship = steps(effects, "reserve", "charge", "ship")

    @DBOS.transaction(name="note")
    def note(value: int) -> int:
        effects.append("note")
        return value * 10

    @DBOS.workflow(name="child")
    def child(value: int) -> int:
        return charge(value)

    @DBOS.workflow(name="order")
    def order(value: int) -> int:
        value = reserve(value)
        DBOS.set_event("stage", "reserved")
        DBOS.sleep(0.01)
        value = child(value)  # a direct call: the child's recorded outcome
        handle = DBOS.start_workflow(child, value)
        value = handle.get_result()
        DBOS.write_stream("progress", value)
        DBOS.close_stream("progress")
        if DBOS.patch("shipping-v2"):
            value = ship(value)
        return note(value)

    @DBOS.workflow(name="listener")
    def listener() -> Any:
        DBOS.send(DBOS.workflow_id or "", "ping", topic="self")
        return DBOS.recv("self", timeout_seconds=5)

    outputs = [run(order, f"order-{n}", n) for n in range(3)]
    assert run(listener, "listener-1") == "ping"
    ran, before = list(effects), table_dump(db_url)
    DBOS.destroy()  # nothing runs in the background while the tables are compared

    report = replay(database_url=db_url)

    assert report.ok, report.describe()
    assert {r.workflow_id for r in report.results} == {
        "order-0", "order-1", "order-2", "order-0-4", "order-1-4", "order-2-4",
        "order-0-5", "order-1-5", "order-2-5", "listener-1",
    }  # fmt: skip
    for result in report.results:
        assert result.operations == result.recorded_operations > 0, result
        assert result.outcome == "returned"
    assert report.result("order-0").operations == 11
    assert effects == ran  # no step or transaction body ran
    assert table_dump(db_url) == before  # and nothing was written
    assert outputs == [(n + 4) * 10 for n in range(3)]


def test_changed_code_reports_exactly_the_workflows_that_diverge_and_where(
    dbos: type[DBOS], db_url: str
) -> None:
    effects: Effects = []
    s1, s2, big, small = steps(effects, "s1", "s2", "big", "small")

    @DBOS.workflow(name="renamed")
    def renamed_v1() -> int:
        return s2(s1(0))

    @DBOS.workflow(name="inserted")
    def inserted_v1() -> int:
        return s2(s1(0))

    @DBOS.workflow(name="branching")
    def branching_v1(n: int) -> int:
        return big(s1(n)) if n > 5 else small(s1(n))

    @DBOS.workflow(name="appended")
    def appended_v1() -> int:
        return s1(0)

    @DBOS.workflow(name="shortened")
    def shortened_v1() -> int:
        return s2(s1(0))

    @DBOS.workflow(name="untouched")
    def untouched_v1() -> int:
        return s2(s1(0))

    for workflow, workflow_id, args in (
        (renamed_v1, "renamed", ()), (inserted_v1, "inserted", ()),
        (branching_v1, "branching-3", (3,)), (branching_v1, "branching-7", (7,)),
        (appended_v1, "appended", ()), (shortened_v1, "shortened", ()),
        (untouched_v1, "untouched", ()),
    ):  # fmt: skip
        run(workflow, workflow_id, *args)
    ran = list(effects)

    # The next version of the code, registered under the same names.
    (s2_renamed, inserted_step) = steps(effects, "s2-renamed", "inserted-step")

    @DBOS.workflow(name="renamed")
    def renamed_v2() -> int:
        return s2_renamed(s1(0))

    @DBOS.workflow(name="inserted")
    def inserted_v2() -> int:
        return s2(inserted_step(s1(0)))

    @DBOS.workflow(name="branching")
    def branching_v2(n: int) -> int:
        return big(s1(n)) if n > 10 else small(s1(n))

    @DBOS.workflow(name="appended")
    def appended_v2() -> int:
        return s2(s1(0))

    @DBOS.workflow(name="shortened")
    def shortened_v2() -> int:
        return s1(0)

    report = replay(database_url=db_url)

    assert divergences(report) == {
        "renamed": (2, "different", "s2", "s2-renamed"),
        "inserted": (2, "different", "s2", "inserted-step"),
        "branching-7": (2, "different", "big", "small"),
        "appended": (2, "extra", None, "s2"),
        "shortened": (2, "missing", "s2", None),
    }
    assert {r.workflow_id for r in report.results if r.can_take} == {"branching-3", "untouched"}
    assert not report.ok
    assert effects == ran
    text = report.describe()
    assert text.startswith("Replayed 7 workflow(s) against the current code: 2 same, 5 diverged")
    assert "at position 2: the record has step 's2', the code asked for step 's2-renamed'" in text
    assert "the code returned without calling step 's2', which the record has" in text
    assert "the code asked for step 's2', but the recorded run ended before it" in text
    assert report.to_json()["diverged"] == 5


def test_an_unfinished_workflow_replays_up_to_the_end_of_its_record(
    dbos: type[DBOS], db_url: str
) -> None:
    effects: Effects = []
    s1, s3 = steps(effects, "s1", "s3")
    entered, release = threading.Event(), threading.Event()

    @DBOS.step(name="s2")
    def s2(value: int) -> int:
        effects.append("s2")
        entered.set()
        release.wait(30)
        return value + 1

    @DBOS.workflow(name="slow")
    def slow() -> int:
        return s3(s2(s1(0)))

    with SetWorkflowID("slow-1"):
        handle = DBOS.start_workflow(slow)
    try:
        assert entered.wait(30)
        ran = list(effects)
        report = replay(database_url=db_url, status="PENDING")  # the same code, running live
        [result] = report.results
        assert (result.workflow_id, result.verdict, result.operations) == ("slow-1", "same", 1)
        assert result.stopped is not None
        assert result.stopped.position == 2

        @DBOS.workflow(name="slow")
        def slow_v2() -> int:  # asks for more than recorded: a live run would go on
            return s3(s3(s2(s1(0))))

        assert replay(database_url=db_url, workflow_ids=["slow-1"]).ok

        @DBOS.workflow(name="slow")
        def slow_v3() -> int:  # returns before using its record
            return 0

        [result] = replay(database_url=db_url, workflow_ids=["slow-1"]).results
        assert result.divergence is not None
        assert (result.divergence.position, result.divergence.kind) == (1, "missing")
        assert effects == ran
    finally:
        release.set()
    assert handle.get_result() == 3  # the live execution went on undisturbed (v1 in hand)


def test_patches_keep_recorded_workflows_on_their_path(dbos: type[DBOS], db_url: str) -> None:
    effects: Effects = []
    s1, s2, s3 = steps(effects, "s1", "s2", "s3")

    @DBOS.workflow(name="flow")
    def flow_v1() -> int:
        return s2(s1(0))

    run(flow_v1, "before-patch")

    @DBOS.workflow(name="flow")
    def flow_v2() -> int:
        value = s1(0)
        if DBOS.patch("use-s3"):
            return s3(value)
        return s2(value)

    run(flow_v2, "after-patch")
    assert replay(database_url=db_url).ok  # each takes the path it recorded

    @DBOS.workflow(name="flow")
    def flow_v3() -> int:  # the old path removed: only workflows that took the patch replay
        value = s1(0)
        DBOS.deprecate_patch("use-s3")
        return s3(value)

    report = replay(database_url=db_url)
    assert divergences(report) == {"before-patch": (2, "different", "s2", "s3")}
    assert report.result("after-patch").can_take

    @DBOS.workflow(name="flow")
    def flow_v4() -> int:  # a patch after the end of a finished record: the old path (none)
        value = s1(0)
        DBOS.deprecate_patch("use-s3")
        value = s3(value)
        if DBOS.patch("later"):
            value = s2(value)
        return value

    assert replay(database_url=db_url, workflow_ids=["after-patch"]).ok


def test_an_export_file_replays_like_the_database(
    dbos: type[DBOS], db_url: str, tmp_path: Path
) -> None:
    effects: Effects = []
    s1, s2, s3 = steps(effects, "s1", "s2", "s3")

    @DBOS.workflow(name="pair")
    def pair(n: int) -> int:
        return s2(s1(n))

    @DBOS.workflow(name="parent")
    def parent(n: int) -> int:
        return pair(n) + pair(n + 1)

    for n in range(3):
        run(pair, f"pair-{n}", n)
    run(parent, "parent", 10)
    path = tmp_path / "histories.json"
    store = dbos._require_runtime().engine.store
    assert write_export(path, load_histories(store)) == 6
    run_sql(db_url, "DELETE FROM {p}operation_outputs")  # the file alone holds the record
    run_sql(db_url, "DELETE FROM {p}workflow_status")

    report = replay(export_file=path)
    assert report.ok, report.describe()
    assert len(report.results) == 6
    assert replay(export_file=path, name="parent").result("parent").operations == 2

    @DBOS.workflow(name="pair")
    def pair_v2(n: int) -> int:
        return s3(s1(n))

    report = replay(export_file=path, limit=2)
    assert len(report.results) == 2
    report = replay(export_file=path)
    assert set(divergences(report)) == {"pair-0", "pair-1", "pair-2", "parent-1", "parent-2"}
    assert report.result("parent").can_take  # its children's outcomes come from the file
    assert effects == ["s1", "s2"] * 5


def test_async_workflows_replay_on_their_own_event_loop(dbos: type[DBOS], db_url: str) -> None:
    effects: Effects = []

    @DBOS.step(name="fetch")
    async def fetch(n: int) -> int:
        effects.append("fetch")
        return n * 2

    @DBOS.workflow(name="gather")
    async def gather() -> list[int]:
        await DBOS.sleep_async(0.01)
        return list(await asyncio.gather(fetch(1), fetch(2), fetch(3)))

    async def record() -> None:
        with SetWorkflowID("gather-1"):
            assert await gather() == [2, 4, 6]

    asyncio.run(record())
    report = replay(database_url=db_url)
    assert report.ok, report.describe()
    assert report.result("gather-1").operations == 4
    assert effects == ["fetch"] * 3


def test_a_workflow_the_code_no_longer_registers_cannot_be_replayed(
    dbos: type[DBOS], db_url: str
) -> None:
    effects: Effects = []
    (s1,) = steps(effects, "s1")

    @DBOS.workflow(name="retired")
    def retired() -> int:
        return s1(0)

    run(retired, "retired-1")
    dbos._registry.workflows.pop("retired")
    report = replay(database_url=db_url)
    [result] = report.failed
    assert result.workflow_id == "retired-1"
    assert "no @DBOS.workflow named 'retired' is registered" in (result.failure or "")
    assert not report.ok


def test_filters_pick_the_workflows_to_replay(dbos: type[DBOS], db_url: str) -> None:
    effects: Effects = []
    (s1,) = steps(effects, "s1")

    @DBOS.workflow(name="a")
    def a() -> int:
        return s1(0)

    @DBOS.workflow(name="b")
    def b() -> int:
        raise RuntimeError("b fails")

    run(a, "a-1")
    with pytest.raises(RuntimeError):
        run(b, "b-1")
    wait_until(lambda: len(run_sql(db_url, "SELECT 1 FROM {p}workflow_status")) == 2)
    run(a, "a-2")

    def ids(**filters: Any) -> set[str]:
        return {r.workflow_id for r in replay(database_url=db_url, **filters).results}

    assert ids() == {"a-1", "a-2", "b-1"}
    assert ids(name="a") == {"a-1", "a-2"}
    assert ids(status="ERROR") == {"b-1"}
    assert ids(workflow_ids=["a-1", "b-1"]) == {"a-1", "b-1"}
    assert ids(limit=1) == {"a-2"}  # the newest first
    created = run_sql(db_url, "SELECT created_at FROM {p}workflow_status WHERE workflow_id = 'a-2'")
    assert ids(since=created[0][0]) == {"a-2"}
    assert (
        replay(database_url=db_url, status="ERROR")
        .result("b-1")
        .outcome.startswith("raised RuntimeError")
    )
    with pytest.raises(ValueError, match="one source"):
        replay(database_url=db_url, export_file="x.json")
