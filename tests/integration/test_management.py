"""Management calls on `DBOS`: list, steps, cancel, resume, fork, delete, garbage collection."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from datetime import datetime, timezone

import pytest

from perdure import DBOS, SetWorkflowID, SetWorkflowTimeout
from perdure.error import DBOSAwaitedWorkflowCancelledError, DBOSNonExistentWorkflowError
from tests.fixtures.app import wait_until
from tests.integration.system_tables import run_sql

WAIT = 10.0


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


def _ids(statuses: list) -> list[str]:  # type: ignore[type-arg]
    return [s.workflow_id for s in statuses]


def test_list_workflows_filters_and_pages(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def alpha(n: int) -> int:
        return n * 10

    @DBOS.workflow()
    def beta(n: int) -> int:
        raise ValueError(f"beta {n}")

    for i in range(5):
        with SetWorkflowID(f"a-{i}"):
            alpha(i)
    for i in range(2):
        with SetWorkflowID(f"b-{i}"), pytest.raises(ValueError, match="beta"):
            beta(i)
    # Distinct, known creation times make ordering and the time window exact.
    for offset, wid in enumerate(["a-0", "a-1", "a-2", "a-3", "a-4", "b-0", "b-1"]):
        run_sql(db_url, "UPDATE {p}workflow_status SET created_at = :t WHERE workflow_id = :w",
                t=1_000_000 + offset * 1000, w=wid)  # fmt: skip
    run_sql(db_url, "UPDATE {p}workflow_status SET authenticated_user = 'ann', "
            "app_version = 'v2' WHERE workflow_id = 'a-3'")  # fmt: skip

    assert _ids(DBOS.list_workflows()) == ["a-0", "a-1", "a-2", "a-3", "a-4", "b-0", "b-1"]
    assert _ids(DBOS.list_workflows(sort_desc=True, limit=2)) == ["b-1", "b-0"]
    assert _ids(DBOS.list_workflows(limit=2, offset=2)) == ["a-2", "a-3"]
    assert _ids(DBOS.list_workflows(offset=5)) == ["b-0", "b-1"]
    assert _ids(DBOS.list_workflows(status="ERROR")) == ["b-0", "b-1"]
    assert _ids(DBOS.list_workflows(status=["ERROR", "SUCCESS"], limit=1)) == ["a-0"]
    assert len(DBOS.list_workflows(name=alpha.__qualname__)) == 5
    assert _ids(DBOS.list_workflows(workflow_id_prefix="b-")) == ["b-0", "b-1"]
    assert _ids(DBOS.list_workflows(workflow_ids=["a-4", "b-0", "zzz"])) == ["a-4", "b-0"]
    assert _ids(DBOS.list_workflows(user="ann")) == ["a-3"]
    assert _ids(DBOS.list_workflows(app_version="v2")) == ["a-3"]
    window = DBOS.list_workflows(
        start_time=datetime.fromtimestamp(1_001, tz=timezone.utc),
        end_time=datetime.fromtimestamp(1_003, tz=timezone.utc).isoformat(),
    )
    assert _ids(window) == ["a-1", "a-2", "a-3"]
    assert DBOS.list_workflows(status="PENDING") == []

    full = DBOS.list_workflows(workflow_ids=["a-2", "b-1"])
    assert full[0].input == {"args": (2,), "kwargs": {}}
    assert full[0].output == 20
    assert isinstance(full[1].error, ValueError)
    bare = DBOS.list_workflows(workflow_ids=["a-2", "b-1"], load_input=False, load_output=False)
    assert [(s.input, s.output, s.error) for s in bare] == [(None, None, None)] * 2
    assert bare[0].status == "SUCCESS"
    assert bare[0].name == alpha.__qualname__
    with pytest.raises(ValueError, match="Unknown workflow status"):
        DBOS.list_workflows(status="DONE")


def test_list_queued_workflows(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def job() -> None:
        pass

    for wid in ("q-1", "q-2", "done"):
        with SetWorkflowID(wid):
            job()
    # Queues are not built yet: mark rows as a queue would.
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = 'mail' "
            "WHERE workflow_id = 'q-1'")  # fmt: skip
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'PENDING', queue_name = 'jobs', "
            "instance_id = 'elsewhere' WHERE workflow_id = 'q-2'")  # fmt: skip
    run_sql(db_url, "UPDATE {p}workflow_status SET queue_name = 'mail' WHERE workflow_id = 'done'")

    assert sorted(_ids(DBOS.list_queued_workflows())) == ["q-1", "q-2"]
    assert _ids(DBOS.list_queued_workflows(queue_name="mail")) == ["q-1"]
    assert _ids(DBOS.list_queued_workflows(status="PENDING")) == ["q-2"]
    # A status given replaces the default "unfinished" one, as in DBOS.
    assert _ids(DBOS.list_queued_workflows(status="SUCCESS")) == ["done"]
    assert _ids(DBOS.list_workflows(queue_name="mail")) == ["q-1", "done"]


def test_list_workflow_steps_decodes_outputs_errors_and_children(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    @DBOS.step()
    def fail() -> None:
        raise KeyError("missing")

    @DBOS.workflow()
    def child() -> str:
        return "child done"

    @DBOS.workflow()
    def parent() -> None:
        add(1, 2)
        with contextlib.suppress(KeyError):
            fail()
        child()
        DBOS.sleep(0.01)

    with SetWorkflowID("steps"):
        parent()
    steps = DBOS.list_workflow_steps("steps")
    assert all(type(s) is dict for s in steps)  # a StepInfo TypedDict, as in DBOS
    assert [s["function_id"] for s in steps] == [1, 2, 3, 4]
    assert [s["function_name"] for s in steps][:2] == [add.__qualname__, fail.__qualname__]
    assert steps[0]["output"] == {"sum": 3}
    assert steps[0]["error"] is None
    assert isinstance(steps[1]["error"], KeyError)
    assert steps[2]["child_workflow_id"] == "steps-3"
    assert steps[3]["function_name"] == "DBOS.sleep"
    assert all(s["started_at_epoch_ms"] <= s["completed_at_epoch_ms"] for s in steps)
    assert DBOS.list_workflow_steps("no-such-workflow") == []


def test_cancel_stops_a_workflow_blocked_in_a_step(dbos: type[DBOS]) -> None:
    entered, release = threading.Event(), threading.Event()
    ran: list[str] = []

    @DBOS.step()
    def slow() -> None:
        entered.set()
        release.wait(WAIT)
        ran.append("slow")

    @DBOS.step()
    def later() -> None:
        ran.append("later")

    @DBOS.workflow()
    def blocked() -> None:
        slow()
        later()

    handle = DBOS.start_workflow(blocked)
    assert entered.wait(WAIT)
    DBOS.cancel_workflow(handle.workflow_id)
    assert _status(handle.workflow_id) == "CANCELLED"
    release.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError, match=handle.workflow_id):
        handle.get_result()
    assert ran == ["slow"]
    assert _status(handle.workflow_id) == "CANCELLED"


def test_cancel_cascades_to_children_when_asked(dbos: type[DBOS]) -> None:
    child_started = threading.Event()

    @DBOS.workflow()
    def sleeper() -> None:
        child_started.set()
        DBOS.sleep(30)

    @DBOS.workflow()
    def parent() -> None:
        DBOS.start_workflow(sleeper).get_result()

    with SetWorkflowID("family"):
        handle = DBOS.start_workflow(parent)
    assert child_started.wait(WAIT)
    DBOS.cancel_workflow("family", cancel_children=True)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow("family-1").get_result()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert _status("family-1") == "CANCELLED"
    DBOS.cancel_workflow("nobody")  # an unknown ID is a no-op, as in DBOS
    assert _status("nobody") is None


def _counted_workflow(counts: Counter[str], gate: threading.Event | None = None):  # type: ignore[no-untyped-def]
    """A four-step workflow counting each step's executions; step 2 waits for ``gate``.

    Each step is named by its position in the workflow: ``step-1`` .. ``step-4``.
    """

    def make(position: int):  # type: ignore[no-untyped-def]
        @DBOS.step(name=f"step-{position}")
        def step(value: int) -> int:
            counts[f"step-{position}"] += 1
            if position == 2 and gate is not None:
                assert gate.wait(WAIT)
            return value + 1

        return step

    steps = [make(p) for p in range(1, 5)]

    @DBOS.workflow(name="four-steps")
    def four_steps(start: int) -> int:
        value = start
        for step in steps:
            value = step(value)
        return value

    return four_steps


def test_resume_after_cancel_skips_finished_steps(dbos: type[DBOS]) -> None:
    counts: Counter[str] = Counter()
    gate = threading.Event()
    workflow = _counted_workflow(counts, gate)
    with SetWorkflowID("resumable"):
        handle = DBOS.start_workflow(workflow, 0)
    wait_until(lambda: counts["step-2"] == 1, what="step 2 running")
    DBOS.cancel_workflow("resumable")
    gate.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert dict(counts) == {"step-1": 1, "step-2": 1}

    resumed = DBOS.resume_workflow("resumable")
    assert resumed.get_result() == 4
    assert handle.get_result() == 4  # the first handle sees the resumed outcome, too
    # Step 2 ran to its end before the cancel was noticed, but its checkpoint was refused:
    # it runs again; step 1 (recorded) does not.
    assert dict(counts) == {"step-1": 1, "step-2": 2, "step-3": 1, "step-4": 1}
    assert _status("resumable") == "SUCCESS"
    # Resuming a finished workflow changes nothing.
    assert DBOS.resume_workflow("resumable").get_result() == 4
    assert counts["step-4"] == 1


def test_resume_brings_back_dead_letters_and_timed_out_workflows(
    dbos: type[DBOS], db_url: str
) -> None:
    counts: Counter[str] = Counter()
    workflow = _counted_workflow(counts)
    with SetWorkflowID("dead"):
        workflow(0)
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', "
            "output = NULL WHERE workflow_id = 'dead'")  # fmt: skip
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'dead' "
            "AND function_id >= 3")  # fmt: skip
    assert DBOS.resume_workflow("dead").get_result() == 4
    assert counts == Counter({"step-1": 1, "step-2": 1, "step-3": 2, "step-4": 2})
    assert DBOS.get_workflow_status("dead").recovery_attempts == 1  # type: ignore[union-attr]

    @DBOS.workflow()
    def napper() -> str:
        DBOS.sleep(0.5)
        return "rested"

    with SetWorkflowID("timed-out"), SetWorkflowTimeout(0.1):
        handle = DBOS.start_workflow(napper)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    resumed = DBOS.resume_workflow("timed-out")
    assert resumed.get_result() == "rested"  # the deadline was cleared
    assert resumed.get_status().workflow_deadline_epoch_ms is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.resume_workflow("nobody")


def test_fork_reexecutes_exactly_the_steps_from_start_step(dbos: type[DBOS]) -> None:
    counts: Counter[str] = Counter()
    workflow = _counted_workflow(counts)
    with SetWorkflowID("original"):
        assert workflow(10) == 14
    counts.clear()

    forked = DBOS.fork_workflow("original", 3)
    assert forked.workflow_id != "original"
    assert forked.get_result() == 14
    assert counts == Counter({"step-3": 1, "step-4": 1})
    status = forked.get_status()
    assert (status.forked_from, status.name, status.input) == (
        "original", "four-steps", {"args": (10,), "kwargs": {}},
    )  # fmt: skip
    assert [s["function_id"] for s in DBOS.list_workflow_steps(forked.workflow_id)] == [1, 2, 3, 4]

    counts.clear()
    with SetWorkflowID("fork-all"):
        # 0, like 1, is before the first step (at position 1): every step runs again.
        again = DBOS.fork_workflow("original", 0, application_version="v9")
    assert again.workflow_id == "fork-all"
    assert again.get_result() == 14
    assert counts == Counter({"step-1": 1, "step-2": 1, "step-3": 1, "step-4": 1})
    assert again.get_status().app_version == "v9"
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.fork_workflow("nobody", 1)


def test_delete_workflow_with_and_without_children(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def leaf() -> int:
        return 1

    @DBOS.workflow()
    def root() -> int:
        return leaf() + leaf()

    for wid in ("keep-kids", "drop-kids"):
        with SetWorkflowID(wid):
            root()
    DBOS.delete_workflow("keep-kids")
    assert _status("keep-kids") is None
    assert DBOS.list_workflow_steps("keep-kids") == []
    assert _status("keep-kids-1") == "SUCCESS"

    DBOS.delete_workflow("drop-kids", delete_children=True)
    assert [_status(w) for w in ("drop-kids", "drop-kids-1", "drop-kids-2")] == [None] * 3
    DBOS.delete_workflow("never-existed")  # no error


def test_garbage_collect_keeps_unfinished_and_respects_cutoff_and_threshold(
    dbos: type[DBOS], db_url: str
) -> None:
    @DBOS.workflow()
    def tiny() -> None:
        pass

    ids = [f"gc-{i}" for i in range(6)]
    for wid in ids:
        with SetWorkflowID(wid):
            tiny()
    for i, wid in enumerate(ids):
        run_sql(db_url, "UPDATE {p}workflow_status SET created_at = :t WHERE workflow_id = :w",
                t=1000 * (i + 1), w=wid)  # fmt: skip
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'PENDING', instance_id = 'x' "
            "WHERE workflow_id = 'gc-0'")  # fmt: skip

    assert DBOS.garbage_collect() == 0
    assert DBOS.garbage_collect(cutoff_epoch_ms=3000) == 1  # gc-1; gc-0 is PENDING
    assert _ids(DBOS.list_workflows()) == ["gc-0", "gc-2", "gc-3", "gc-4", "gc-5"]
    assert DBOS.garbage_collect(rows_threshold=2) == 2  # keeps the 2 newest, and gc-0
    assert _ids(DBOS.list_workflows()) == ["gc-0", "gc-4", "gc-5"]
    with pytest.raises(ValueError, match="rows_threshold"):
        DBOS.garbage_collect(rows_threshold=0)


def test_async_twins(dbos: type[DBOS]) -> None:
    counts: Counter[str] = Counter()
    workflow = _counted_workflow(counts)
    with SetWorkflowID("async-source"):
        workflow(0)

    async def main() -> None:
        listed = await DBOS.list_workflows_async(workflow_id_prefix="async-")
        assert _ids(listed) == ["async-source"]
        assert await DBOS.list_queued_workflows_async() == []
        assert len(await DBOS.list_workflow_steps_async("async-source")) == 4
        with SetWorkflowID("async-fork"):
            forked = await DBOS.fork_workflow_async("async-source", 4)
        assert forked.workflow_id == "async-fork"
        assert await forked.get_result() == 4
        await DBOS.cancel_workflow_async("async-fork")
        resumed = await DBOS.resume_workflow_async("async-fork")
        assert await resumed.get_result() == 4
        await DBOS.delete_workflow_async("async-fork")
        assert await DBOS.garbage_collect_async(rows_threshold=1) == 0

    asyncio.run(main())
    assert counts["step-4"] == 2  # the last step: run by the source, then the fork
    assert _status("async-fork") is None
