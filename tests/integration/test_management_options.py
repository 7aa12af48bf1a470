"""DBOS 3.4's management options on `DBOS`: every listing filter and status field, cancel with
and without children, resume and fork onto queues, delays, paged steps, undecodable payloads."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from perdure import DBOS, Queue, SetEnqueueOptions, SetWorkflowID
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
)
from tests.fixtures.app import wait_until
from tests.integration.system_tables import run_sql

WAIT = 10.0
HOUR_MS = 3_600_000


def _ids(statuses: list) -> list[str]:  # type: ignore[type-arg]
    return [s.workflow_id for s in statuses]


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


def _child_of(parent_id: str) -> str:
    [child] = [s["child_workflow_id"] for s in DBOS.list_workflow_steps(parent_id)]
    assert child is not None
    return child


# -- listing ------------------------------------------------------------------------------------


def test_listings_filter_on_lineage_executor_and_flags(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def kid() -> str:
        return "kid"

    @DBOS.workflow()
    def family() -> str:
        return kid()

    with SetWorkflowID("family"):
        family()
    fork = DBOS.fork_workflow("family", 1)
    assert fork.get_result() == "kid"
    kid_id, fork_kid_id = _child_of("family"), _child_of(fork.workflow_id)
    everything = ["family", kid_id, fork.workflow_id, fork_kid_id]
    assert _ids(DBOS.list_workflows()) == everything

    assert _ids(DBOS.list_workflows(parent_workflow_id="family")) == [kid_id]
    parents = ["family", fork.workflow_id]
    assert _ids(DBOS.list_workflows(parent_workflow_id=parents)) == [kid_id, fork_kid_id]
    assert _ids(DBOS.list_workflows(forked_from="family")) == [fork.workflow_id]
    assert _ids(DBOS.list_workflows(is_fork=True)) == [fork.workflow_id]
    assert _ids(DBOS.list_workflows(was_forked_from=True)) == ["family"]
    assert _ids(DBOS.list_workflows(has_parent=False, is_fork=False)) == ["family"]
    assert _ids(DBOS.list_workflows(has_parent=True)) == [kid_id, fork_kid_id]
    assert _ids(DBOS.list_workflows(executor_id=["local", "elsewhere"])) == everything
    assert DBOS.list_workflows(executor_id="elsewhere") == []
    assert _ids(DBOS.list_workflows(workflow_id_prefix=["fam", fork.workflow_id])) == [
        "family", kid_id, fork.workflow_id, fork_kid_id,
    ]  # fmt: skip
    # Perdure records no application names: every workflow is unclaimed, which DBOS counts
    # as belonging to every application.
    assert _ids(DBOS.list_workflows(application_name="any-app")) == everything

    source = DBOS.get_workflow_status("family")
    assert source is not None
    assert (source.was_forked_from, source.schedule_name, source.queue_partition_key) == (
        True, None, None,
    )  # fmt: skip
    never = (source.assumed_role, source.authenticated_roles, source.attributes)
    assert never == (None, None, None)
    assert (source.application_name, source.app_id) == (None, None)


def test_listings_filter_on_end_and_dequeue_times(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("timed-queue")
    gate = threading.Event()

    @DBOS.workflow()
    def job(n: int) -> int:
        return n

    @DBOS.workflow()
    def held() -> None:
        assert gate.wait(WAIT)

    began = int(time.time() * 1000)
    handles = [queue.enqueue(job, n) for n in range(3)]
    assert [h.get_result() for h in handles] == [0, 1, 2]
    with SetWorkflowID("held"):
        running = DBOS.start_workflow(held)
    ids = [h.workflow_id for h in handles]
    for status in DBOS.list_workflows(workflow_ids=ids):
        assert status.completed_at is not None
        assert status.completed_at >= began
        assert status.dequeued_at is not None
        assert status.dequeued_at >= began
        assert status.delay_until_epoch_ms is None
    pending = DBOS.get_workflow_status("held")
    assert pending is not None
    assert (pending.completed_at, pending.dequeued_at) == (None, None)

    # Known times make the windows exact (ms: 1_000_000 = 1970-01-01T00:16:40Z).
    for n, workflow_id in enumerate(ids):
        run_sql(db_url, "UPDATE {p}workflow_status SET completed_at = :c, "
                "dequeued_at_epoch_ms = :d WHERE workflow_id = :w",
                c=1_000_000 + n * 1000, d=2_000_000 + n * 1000, w=workflow_id)  # fmt: skip

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()

    # Sorted: enqueued within one millisecond, they may list in either order.
    assert sorted(_ids(DBOS.list_workflows(completed_after=iso(1_001_000)))) == sorted(ids[1:])
    assert sorted(_ids(DBOS.list_workflows(completed_before=1_001_000))) == sorted(ids[:2])
    assert _ids(DBOS.list_workflows(dequeued_after=2_001_000, dequeued_before=iso(2_001_000))) == [
        ids[1]
    ]
    assert DBOS.list_workflows(completed_after=0, workflow_ids=["held"]) == []
    gate.set()
    running.get_result()


def test_listing_arguments_dbos_does_not_take_or_perdure_cannot_honour(dbos: type[DBOS]) -> None:
    with pytest.raises(ValueError, match="JSON values"):
        DBOS.list_workflows(attributes={"team": object()})
    with pytest.raises(TypeError, match="must be a dict"):
        DBOS.list_queued_workflows(attributes=[("team", "a")])  # type: ignore[arg-type]
    assert DBOS.list_workflows(attributes={}) == []  # no condition at all
    for keyword in ("queues_only", "was_forked_from", "schedule_name"):
        with pytest.raises(TypeError, match=keyword):
            DBOS.list_queued_workflows(**{keyword: None})  # type: ignore[misc]
    with pytest.raises(TypeError, match="is_fork"):
        DBOS.list_workflows(is_fork="yes")  # type: ignore[typeddict-item]


def test_a_schedule_tick_records_the_schedule_name(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def report(scheduled_time: datetime, context: Any) -> str:
        return scheduled_time.isoformat()

    DBOS.create_schedule(schedule_name="yearly", workflow_fn=report, schedule="0 0 1 1 *")
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    handles = DBOS.backfill_schedule("yearly", start, datetime(2022, 1, 1, tzinfo=timezone.utc))
    for handle in handles:
        handle.get_result()
    assert [h.get_status().schedule_name for h in handles] == ["yearly", "yearly"]
    assert _ids(DBOS.list_workflows(schedule_name=["yearly"])) == [h.workflow_id for h in handles]
    assert DBOS.list_workflows(schedule_name="other") == []


def test_undecodable_payloads_are_listed_as_stored_and_raise_elsewhere(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.step()
    def seven() -> int:
        return 7

    @DBOS.workflow()
    def odd(n: int) -> int:
        return seven() + n

    with SetWorkflowID("odd"):
        odd(1)
    # Written in a format this process cannot read (another application's serializer).
    for table in ("workflow_status", "operation_outputs"):
        run_sql(db_url, f"UPDATE {{p}}{table} SET serialization = 'martian' "
                "WHERE workflow_id = 'odd'")  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="perdure"):
        [listed] = DBOS.list_workflows(workflow_ids=["odd"])
        [step] = DBOS.list_workflow_steps("odd")
    assert listed.status == "SUCCESS"
    assert isinstance(listed.input, str)
    assert isinstance(listed.output, str)
    assert "8" in listed.output
    assert isinstance(step["output"], str)
    assert "7" in step["output"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3
    assert all("odd" in message for message in warned)
    with pytest.raises(DBOSSerializationError):
        DBOS.get_result("odd")
    with pytest.raises(DBOSSerializationError):
        DBOS.get_workflow_status("odd")


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_leaves_children_running_unless_asked(dbos: type[DBOS]) -> None:
    entered, gate = threading.Event(), threading.Event()
    ran: list[str] = []

    @DBOS.step()
    def wait_for_gate() -> None:
        entered.set()
        assert gate.wait(WAIT)

    @DBOS.workflow()
    def kid() -> str:
        wait_for_gate()
        return "kid done"

    @DBOS.step()
    def after() -> None:
        ran.append("after")

    @DBOS.workflow()
    def parent() -> str:
        result = DBOS.start_workflow(kid).get_result()
        after()
        return result  # type: ignore[no-any-return]

    with SetWorkflowID("parent"):
        handle = DBOS.start_workflow(parent)
    assert entered.wait(WAIT)
    kid_id = _child_of("parent")
    DBOS.cancel_workflow("parent")
    assert (_status("parent"), _status(kid_id)) == ("CANCELLED", "PENDING")
    gate.set()  # the kid goes on; the parent, waiting for it, stops at its next step
    assert DBOS.retrieve_workflow(kid_id).get_result() == "kid done"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    wait_until(lambda: not dbos._require_runtime().engine.is_active("parent"))
    assert ran == []
    cancelled = DBOS.get_workflow_status("parent")
    assert cancelled is not None
    assert cancelled.completed_at is not None


def test_cancel_workflows_cancels_several_and_ignores_finished_and_unknown(
    dbos: type[DBOS],
) -> None:
    queue = Queue("later")

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    with SetWorkflowID("done"):
        job()
    ids = []
    for _ in range(2):
        with SetEnqueueOptions(delay_seconds=3600):
            ids.append(queue.enqueue(job).workflow_id)
    assert [_status(w) for w in ids] == ["DELAYED", "DELAYED"]
    DBOS.cancel_workflows([*ids, "done", "nobody"])
    assert [_status(w) for w in (*ids, "done", "nobody")] == ["CANCELLED"] * 2 + ["SUCCESS", None]
    asyncio.run(DBOS.cancel_workflows_async(ids, cancel_children=True))  # nothing left
    asyncio.run(DBOS.cancel_workflow_async("nobody"))
    assert DBOS.list_queued_workflows() == []


# -- delays ---------------------------------------------------------------------------------------


def test_set_workflow_delay_moves_the_start_of_a_waiting_workflow(dbos: type[DBOS]) -> None:
    queue = Queue("delays")

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    with SetEnqueueOptions(delay_seconds=3600):
        handle = queue.enqueue(job)
    first = handle.get_status()
    assert first.status == "DELAYED"
    assert first.delay_until_epoch_ms is not None
    DBOS.set_workflow_delay(handle.workflow_id, delay_seconds=7200)
    later = handle.get_status()
    assert later.status == "DELAYED"
    assert later.delay_until_epoch_ms is not None
    assert later.delay_until_epoch_ms >= first.delay_until_epoch_ms + HOUR_MS - 1000
    assert _ids(DBOS.list_queued_workflows(status="DELAYED")) == [handle.workflow_id]

    began = time.monotonic()
    asyncio.run(DBOS.set_workflow_delay_async(handle.workflow_id, delay_until_epoch_ms=0))
    assert handle.get_result() == "ran"  # the dequeuer was woken, not left asleep for hours
    assert time.monotonic() - began < WAIT

    # Finished or unknown workflows are left alone; a bad delay is refused.
    DBOS.set_workflow_delay(handle.workflow_id, delay_seconds=60)
    assert handle.get_status().delay_until_epoch_ms == 0
    DBOS.set_workflow_delay("nobody", delay_seconds=60)
    for bad in ({}, {"delay_seconds": 1, "delay_until_epoch_ms": 1}, {"delay_seconds": -1}):
        with pytest.raises(DBOSException, match="delay"):
            DBOS.set_workflow_delay(handle.workflow_id, **bad)  # type: ignore[arg-type]


def test_set_workflow_delay_also_holds_back_an_enqueued_workflow(dbos: type[DBOS]) -> None:
    queue = Queue("single", concurrency=1)
    gate = threading.Event()

    @DBOS.workflow()
    def blocker() -> None:
        assert gate.wait(WAIT)

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    first = queue.enqueue(blocker)
    wait_until(lambda: _status(first.workflow_id) == "PENDING")
    second = queue.enqueue(job)
    assert _status(second.workflow_id) == "ENQUEUED"
    DBOS.set_workflow_delay(second.workflow_id, delay_seconds=3600)
    assert _status(second.workflow_id) == "DELAYED"
    gate.set()
    first.get_result()
    assert _status(second.workflow_id) == "DELAYED"  # the free slot does not start it
    DBOS.set_workflow_delay(second.workflow_id, delay_seconds=0)
    assert second.get_result() == "ran"


# -- resume and fork ----------------------------------------------------------------------------


def test_resume_and_fork_onto_a_queue(dbos: type[DBOS], db_url: str) -> None:
    queue = Queue("redo")
    parts = Queue("parts", partition_queue=True)
    calls: list[str] = []

    @DBOS.step()
    def tick(name: str) -> str:
        calls.append(name)
        return name

    @DBOS.workflow()
    def ticks() -> list[str]:
        return [tick("a"), tick("b")]

    with SetWorkflowID("source"):
        ticks()
    run_sql(db_url, "UPDATE {p}workflow_status SET status = 'CANCELLED', output = NULL "
            "WHERE workflow_id = 'source'")  # fmt: skip
    calls.clear()

    resumed = DBOS.resume_workflow("source", queue_name=queue.name)
    assert resumed.get_result() == ["a", "b"]
    assert calls == []  # both steps replayed
    status = resumed.get_status()
    assert (status.queue_name, status.completed_at is not None) == ("redo", True)

    forked = DBOS.fork_workflow("source", 1, queue_name=queue.name, timeout_seconds=30)
    assert forked.get_result() == ["a", "b"]
    fork_status = forked.get_status()
    assert (fork_status.queue_name, fork_status.workflow_timeout_ms) == ("redo", 30_000)
    assert fork_status.forked_from == "source"
    source = DBOS.get_workflow_status("source")
    assert source is not None
    assert source.was_forked_from

    partitioned = DBOS.fork_workflow(
        "source", 1, queue_name=parts.name, queue_partition_key="tenant-1"
    )
    assert partitioned.get_result() == ["a", "b"]
    assert partitioned.get_status().queue_partition_key == "tenant-1"
    with pytest.raises(ValueError, match="queue_partition_key needs a queue_name"):
        DBOS.fork_workflow("source", 1, queue_partition_key="tenant-1")
    with pytest.raises(ValueError, match="timeout_seconds must be positive"):
        DBOS.fork_workflow("source", 1, timeout_seconds=0)

    async def twins() -> None:
        handle = await DBOS.resume_workflow_async("source", queue_name=queue.name)
        assert await handle.get_result() == ["a", "b"]
        fork = await DBOS.fork_workflow_async("source", 1, queue_name=queue.name)
        assert await fork.get_result() == ["a", "b"]

    asyncio.run(twins())


def test_fork_replaces_the_children_of_its_copied_steps(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def kid(n: int) -> int:
        return n

    @DBOS.workflow()
    def family() -> int:
        return DBOS.start_workflow(kid, 1).get_result() + 1  # type: ignore[no-any-return]

    with SetWorkflowID("family"):
        assert family() == 2
    with SetWorkflowID("stand-in"):
        kid(100)
    [start] = [s for s in DBOS.list_workflow_steps("family") if s["child_workflow_id"]]
    forked = DBOS.fork_workflow(
        "family",
        start["function_id"] + 1,
        replacement_children={start["child_workflow_id"]: "stand-in"},
    )
    assert forked.get_result() == 101
    copied = DBOS.list_workflow_steps(forked.workflow_id)[0]
    assert copied["child_workflow_id"] == "stand-in"


# -- steps, handles -----------------------------------------------------------------------------


def test_list_workflow_steps_pages_and_skips_outputs(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def square(n: int) -> int:
        return n * n

    @DBOS.workflow()
    def squares() -> None:
        for n in range(5):
            square(n)

    with SetWorkflowID("squares"):
        squares()
    steps = DBOS.list_workflow_steps("squares")
    assert [s["output"] for s in steps] == [0, 1, 4, 9, 16]
    page = DBOS.list_workflow_steps("squares", limit=2, offset=1)
    assert [s["function_id"] for s in page] == [s["function_id"] for s in steps[1:3]]
    assert [s["output"] for s in DBOS.list_workflow_steps("squares", offset=4)] == [16]
    bare = DBOS.list_workflow_steps("squares", load_output=False)
    assert [s["output"] for s in bare] == [None] * 5
    assert [s["function_name"] for s in bare] == [s["function_name"] for s in steps]
    first = asyncio.run(DBOS.list_workflow_steps_async("squares", limit=1))
    assert [s["output"] for s in first] == [0]
    with pytest.raises(ValueError, match="limit"):
        DBOS.list_workflow_steps("squares", limit=-1)


def test_retrieve_without_the_existence_check_waits_for_the_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def job(label: str) -> str:
        return label

    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("later")
    handle = DBOS.retrieve_workflow("later", existing_workflow=False)
    results: list[str] = []
    waiter = threading.Thread(
        target=lambda: results.append(handle.get_result(polling_interval_sec=0.05))
    )
    waiter.start()
    with SetWorkflowID("later"):
        job("here")
    waiter.join(WAIT)
    assert results == ["here"]

    async def main() -> str:
        pending = await DBOS.retrieve_workflow_async("later-async", existing_workflow=False)
        waiting = asyncio.ensure_future(pending.get_result(polling_interval_sec=0.05))
        await asyncio.sleep(0)  # let the wait begin before the workflow exists
        with SetWorkflowID("later-async"):
            await asyncio.to_thread(job, "there")
        return await asyncio.wait_for(waiting, WAIT)  # type: ignore[no-any-return]

    assert asyncio.run(main()) == "there"
    done = DBOS.retrieve_workflow("later")
    assert done.get_result(polling_interval_sec=5.0) == "here"  # accepted, not waited on
