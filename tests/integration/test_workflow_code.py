"""DBOS members workflow code calls: `run_step`, `wait_first`, `asyncio_wait`, `patch`,
`deprecate_patch`, `validate_args`, and the small contracts around them (`sleep(0)`,
`step_status` numbering, the singleton, unlimited recovery attempts)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import ValidationError

from perdure import DBOS, SetWorkflowID, StepOptions
from perdure.error import DBOSException, DBOSInitializationError
from perdure.serialization import WorkflowSerializationFormat
from perdure.validation import pydantic_args_validator
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql, step_rows


def test_run_step_checkpoints_an_undecorated_function(dbos: type[DBOS], db_url: str) -> None:
    calls: list[str] = []

    def fetch(item: str) -> str:
        calls.append(item)
        return item.upper()

    async def fetch_async(item: str) -> str:
        calls.append(item)
        return item * 2

    options: StepOptions = {"name": "fetch-item", "retries_allowed": True, "max_attempts": 2}

    @DBOS.workflow()
    def flow() -> tuple[str, str, str]:
        return (
            DBOS.run_step(options, fetch, "a"),
            DBOS.run_step(None, fetch, item="b"),
            DBOS.run_step(None, fetch_async, "c"),
        )

    @DBOS.workflow()
    async def flow_async() -> tuple[str, str]:
        return (
            await DBOS.run_step_async(None, fetch, "d"),
            await DBOS.run_step_async({"name": "twice"}, fetch_async, "e"),
        )

    with SetWorkflowID("run-step-1"):
        assert flow() == ("A", "B", "cc")
    with SetWorkflowID("run-step-2"):
        assert asyncio.run(flow_async()) == ("D", "ee")
    assert [s["function_name"] for s in DBOS.list_workflow_steps("run-step-1")] == [
        "fetch-item", fetch.__qualname__, fetch_async.__qualname__
    ]  # fmt: skip
    assert [s["function_name"] for s in DBOS.list_workflow_steps("run-step-2")] == [
        fetch.__qualname__, "twice"
    ]  # fmt: skip
    mark_pending(db_url, "run-step-1")
    mark_pending(db_url, "run-step-2")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("run-step-1").get_result() == ("A", "B", "cc")
    assert DBOS.retrieve_workflow("run-step-2").get_result() == ("D", "ee")
    assert calls == ["a", "b", "c", "d", "e"]  # replays ran none of them again
    assert DBOS.run_step(None, fetch, "x") == "X"  # outside a workflow: a plain call
    with pytest.raises(DBOSInitializationError, match="unknown step option"):
        DBOS.run_step({"retries": 3}, fetch, "y")  # type: ignore[typeddict-unknown-key]


def test_wait_first_returns_the_first_to_finish_and_replays_it(
    dbos: type[DBOS], db_url: str
) -> None:
    release = {"slow": threading.Event(), "fast": threading.Event()}

    @DBOS.workflow()
    def worker(kind: str) -> str:
        release[kind].wait(30)
        return kind

    @DBOS.workflow()
    def first_of_two() -> str:
        slow = DBOS.start_workflow(worker, "slow")
        fast = DBOS.start_workflow(worker, "fast")
        release["fast"].set()
        return str(DBOS.wait_first([slow, fast]).get_result())

    with SetWorkflowID("first-1"):
        assert first_of_two() == "fast"
    release["slow"].set()
    assert DBOS.retrieve_workflow("first-1-1").get_result() == "slow"
    # A replay gets the recorded choice, although both have finished by now.
    mark_pending(db_url, "first-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("first-1").get_result() == "fast"
    names = [s["function_name"] for s in DBOS.list_workflow_steps("first-1")]
    assert "DBOS.waitFirst" in names

    handles = [DBOS.retrieve_workflow("first-1-1"), DBOS.retrieve_workflow("first-1-2")]
    assert DBOS.wait_first(handles).workflow_id == "first-1-1"  # both done: the first given
    with pytest.raises(ValueError, match="at least one"):
        DBOS.wait_first([])
    with pytest.raises(ValueError, match="same workflow twice"):
        DBOS.wait_first([handles[0], handles[0]])

    async def first_async() -> str:
        async_handles = [await DBOS.retrieve_workflow_async(h.workflow_id) for h in handles]
        return (await DBOS.wait_first_async(async_handles)).workflow_id

    assert asyncio.run(first_async()) == "first-1-1"


def test_asyncio_wait_records_which_finished(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.step()
    async def quick() -> str:
        return "quick"

    @DBOS.step()
    async def stuck() -> str:
        await asyncio.sleep(60)
        return "stuck"

    @DBOS.workflow()
    async def race() -> list[str]:
        tasks = [asyncio.ensure_future(stuck()), asyncio.ensure_future(quick())]
        done, pending = await DBOS.asyncio_wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return sorted(t.result() for t in done)

    with SetWorkflowID("race-1"):
        assert asyncio.run(race()) == ["quick"]
    recorded = [s for s in DBOS.list_workflow_steps("race-1") if s["function_name"] == (
        "DBOS.asyncio_wait")]  # fmt: skip
    assert [s["output"] for s in recorded] == [[1]]  # the index of the one done

    async def plain() -> tuple[int, int]:
        done, pending = await DBOS.asyncio_wait([asyncio.sleep(0, "x")])
        return len(done), len(pending)

    assert asyncio.run(plain()) == (1, 0)  # outside a workflow: asyncio.wait


def test_asyncio_wait_timeout_replays_in_the_same_order(dbos: type[DBOS]) -> None:
    runs: list[str] = []

    @DBOS.step()
    async def gated(tag: str, gate: asyncio.Event) -> str:
        runs.append(tag)
        await gate.wait()
        return tag

    @DBOS.workflow()
    async def waits_twice() -> list[str]:
        gate = asyncio.Event()
        done, pending = await DBOS.asyncio_wait([gated("a", gate), gated("b", gate)], timeout=0.05)
        assert (len(done), len(pending)) == (0, 2)  # the first wait timed out
        gate.set()
        done, pending = await DBOS.asyncio_wait(list(pending))
        return sorted(t.result() for t in done)

    with SetWorkflowID("timed-wait"):
        assert asyncio.run(waits_twice()) == ["a", "b"]
    names = [s["function_name"] for s in DBOS.list_workflow_steps("timed-wait")]
    assert names == [gated.__qualname__] * 2 + ["DBOS.asyncio_wait"] * 2  # the steps first
    fork = DBOS.fork_workflow("timed-wait", 100)  # every operation replayed from the record
    assert fork.get_result() == ["a", "b"]
    assert runs == ["a", "b"]  # no step ran again


def test_patch_sends_old_histories_down_the_old_path(dbos: type[DBOS], db_url: str) -> None:
    ran: list[str] = []
    patched = {"on": False}

    @DBOS.step()
    def old_step() -> str:
        ran.append("old")
        return "old"

    @DBOS.step()
    def new_step() -> str:
        ran.append("new")
        return "new"

    @DBOS.step()
    def last_step() -> str:
        ran.append("last")
        return "last"

    @DBOS.workflow()
    def versioned() -> str:
        middle = new_step() if patched["on"] and DBOS.patch("use-new-step") else old_step()
        return middle + "-" + last_step()

    with SetWorkflowID("before-patch"):
        assert versioned() == "old-last"
    patched["on"] = True
    with SetWorkflowID("after-patch"):
        assert versioned() == "new-last"
    after = [s["function_name"] for s in DBOS.list_workflow_steps("after-patch")]
    assert after == ["DBOS.patch-use-new-step", new_step.__qualname__, last_step.__qualname__]

    # The workflow started before the patch replays its old path; the new one its new path.
    ran.clear()
    for workflow_id in ("before-patch", "after-patch"):
        mark_pending(db_url, workflow_id)
    relaunch(db_url)
    assert DBOS.retrieve_workflow("before-patch").get_result() == "old-last"
    assert DBOS.retrieve_workflow("after-patch").get_result() == "new-last"
    assert ran == []

    # Deprecated: always the new path, stepping over recorded markers, recording none.
    @DBOS.workflow()
    def deprecated() -> str:
        DBOS.deprecate_patch("use-new-step")
        return new_step() + "-" + last_step()

    with SetWorkflowID("deprecated-1"):
        assert deprecated() == "new-last"
    names = [s["function_name"] for s in DBOS.list_workflow_steps("deprecated-1")]
    assert names == [new_step.__qualname__, last_step.__qualname__]
    with pytest.raises(DBOSException, match="from workflow code"):
        DBOS.patch("outside")


def test_patch_replays_a_marker_recorded_by_a_fresh_run_with_deprecate_patch(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.step()
    def work() -> str:
        return "w"

    @DBOS.workflow()
    def with_patch() -> str:
        assert DBOS.patch("p")
        return work()

    with SetWorkflowID("marker-1"):
        assert with_patch() == "w"

    @DBOS.workflow(name=with_patch.__qualname__)
    def deprecating() -> str:
        assert DBOS.deprecate_patch("p")
        return work()

    mark_pending(db_url, "marker-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("marker-1").get_result() == "w"
    ids = [(r.function_id, r.function_name) for r in step_rows(db_url, "marker-1")]
    assert ids == [(1, "DBOS.patch-p"), (2, work.__qualname__)]


def test_validate_args_converts_and_refuses(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow(validate_args=pydantic_args_validator)
    def typed(count: int, label: str = "n") -> str:
        return f"{label}{count + 1}"

    def only_positive(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args[0] <= 0:
            raise ValueError(f"count must be positive, not {args[0]}")
        return args, kwargs

    @DBOS.workflow(validate_args=only_positive)
    def custom(count: int) -> int:
        return count

    assert typed("41") == "n42"  # type: ignore[arg-type]  # converted before the body runs
    with SetWorkflowID("invalid-1"), pytest.raises(ValidationError):
        typed("many")  # type: ignore[arg-type]
    assert DBOS.get_workflow_status("invalid-1").status == "ERROR"  # type: ignore[union-attr]
    assert custom(3) == 3
    with pytest.raises(ValueError, match="must be positive"):
        custom(0)
    with pytest.raises(DBOSException, match="serialization_type"):
        DBOS.workflow(serialization_type=WorkflowSerializationFormat.PORTABLE)
    DBOS.workflow(serialization_type=WorkflowSerializationFormat.DEFAULT)(lambda: None)


def test_small_contracts(dbos: type[DBOS], db_url: str) -> None:
    statuses: list[Any] = []

    @DBOS.step()
    def plain() -> None:
        statuses.append(DBOS.step_status)

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
    def retried() -> None:
        statuses.append(DBOS.step_status)
        if len(statuses) < 3:
            raise RuntimeError("again")

    @DBOS.workflow(max_recovery_attempts=None)
    def flow() -> None:
        DBOS.sleep(0)
        DBOS.sleep(-1)
        plain()
        retried()

    with SetWorkflowID("small-1"):
        flow()
    # As in DBOS: no attempt numbers without retries, attempts counted from 0 with them.
    assert [(s.step_id, s.current_attempt, s.max_attempts) for s in statuses] == [
        (1, None, None), (2, 0, 3), (2, 1, 3),
    ]  # fmt: skip
    assert [r.function_id for r in step_rows(db_url, "small-1")] == [1, 2]  # no sleep steps
    DBOS.sleep(-1)  # outside a workflow too

    # Unlimited recovery attempts: never dead-lettered.
    run_sql(db_url, "UPDATE {p}workflow_status SET recovery_attempts = 500 "
            "WHERE workflow_id = 'small-1'")  # fmt: skip
    mark_pending(db_url, "small-1")
    relaunch(db_url)
    wait_until(lambda: DBOS.get_workflow_status("small-1").status == "SUCCESS")  # type: ignore[union-attr]

    # The instance is a singleton until destroyed: a second config is ignored.
    DBOS(config=make_config(db_url, executor_id="someone-else"))
    assert DBOS.executor_id != "someone-else"


def test_a_step_can_be_started_and_enqueued_as_a_workflow(
    dbos: type[DBOS], caplog: pytest.LogCaptureFixture
) -> None:
    from perdure import Queue  # noqa: PLC0415 - only this test declares a queue

    queue = Queue("steps-as-workflows")

    seen: list[tuple[str | None, int | None]] = []

    @DBOS.step()
    def double(n: int) -> int:
        seen.append((DBOS.workflow_id, DBOS.step_id))
        return n * 2

    @DBOS.step()
    async def triple(n: int) -> int:
        return n * 3

    assert DBOS.start_workflow(double, 4).get_result() == 8
    assert queue.enqueue(double, 5).get_result() == 10

    async def start_triple() -> tuple[int, str]:
        started = await DBOS.start_workflow_async(triple, 2)
        return await started.get_result(), (await started.get_status()).name

    assert asyncio.run(start_triple()) == (6, "<temp>." + triple.__qualname__)
    handle = DBOS.start_workflow(double, 1)
    handle.get_result()
    steps = DBOS.list_workflow_steps(handle.workflow_id)
    assert [(s["function_id"], s["function_name"]) for s in steps] == [(1, double.__qualname__)]
    assert double(3) == 6  # still a plain call outside workflows
    assert [step_id for _, step_id in seen] == [1, 1, 1, None]
    assert seen[2][0] == handle.workflow_id

    @DBOS.workflow(name="dup")
    def one() -> None: ...

    @DBOS.workflow(name="dup")
    def two() -> None: ...

    assert "Duplicate registration of function 'dup'" in caplog.text

    @DBOS.step(name="dup_step")
    def step_one() -> None: ...

    @DBOS.step(name="dup_step")
    async def step_two() -> None: ...

    assert "Duplicate registration of function 'dup_step'" in caplog.text  # the step's name


def test_reserved_steps_keep_their_positions(dbos: type[DBOS], db_url: str) -> None:
    ran: list[str] = []

    def record(label: str) -> str:
        ran.append(label)
        return label

    async def record_async(label: str) -> str:
        ran.append(label)
        return label

    @DBOS.workflow()
    async def reserving() -> list[str]:
        first = DBOS.reserve_step()
        second = DBOS.reserve_step()
        # Run in the opposite order of the reservations: the positions stay 1 and 2.
        later = await second.run_async({"name": "second"}, record_async, "b")
        earlier = await first.run_async(None, record, "a")
        with pytest.raises(DBOSException, match="already run once"):
            await first.run_async(None, record, "again")
        return [earlier, later]

    with SetWorkflowID("reserve-1"):
        assert asyncio.run(reserving()) == ["a", "b"]
    rows = [(r.function_id, r.function_name) for r in step_rows(db_url, "reserve-1")]
    assert rows == [(1, record.__qualname__), (2, "second")]
    mark_pending(db_url, "reserve-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("reserve-1").get_result() == ["a", "b"]
    assert ran == ["b", "a"]  # replayed, not run again
    with pytest.raises(DBOSException, match="from workflow code"):
        DBOS.reserve_step()
