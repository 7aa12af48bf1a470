"""Events (latest value per key) and streams (ordered, closable) on both backends."""

from __future__ import annotations

import threading
import time

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSException
from tests.integration.system_tables import mark_pending, relaunch


def test_events_replace_and_are_listed(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def from_step() -> None:
        DBOS.set_event("stage", "in-step")

    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("stage", "started")
        DBOS.set_event("stage", "working")
        from_step()
        DBOS.set_event("total", 3)

    with SetWorkflowID("pub"):
        publisher()
    assert DBOS.get_event("pub", "stage", 1) == "in-step"
    assert DBOS.get_all_events("pub") == {"stage": "in-step", "total": 3}


def test_get_event_waits_for_it_and_times_out_with_none(dbos: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.step()
    def wait_gate() -> None:
        assert gate.wait(20)

    @DBOS.workflow()
    def late() -> None:
        wait_gate()
        DBOS.set_event("ready", True)

    with SetWorkflowID("late"):
        DBOS.start_workflow(late)
    started = time.monotonic()
    assert DBOS.get_event("late", "ready", timeout_seconds=0.3) is None
    assert time.monotonic() - started >= 0.25
    gate.set()
    assert DBOS.get_event("late", "ready", timeout_seconds=10) is True


def test_get_event_inside_a_workflow_is_checkpointed(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def source() -> None:
        DBOS.set_event("v", 1)

    @DBOS.workflow()
    def reader() -> object:
        return DBOS.get_event("src", "v", timeout_seconds=5)

    with SetWorkflowID("src"):
        source()
    with SetWorkflowID("reader"):
        assert reader() == 1
    with SetWorkflowID("src-2"):
        source()  # another workflow; the reader's recorded value must not change
    mark_pending(db_url, "reader")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("reader").get_result() == 1


def test_set_event_outside_a_workflow_is_a_clear_error(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match="must be called from within a workflow"):
        DBOS.set_event("k", 1)


def test_stream_is_read_in_order_while_being_written(dbos: type[DBOS]) -> None:
    step_gate = threading.Semaphore(0)

    @DBOS.step()
    def wait_turn() -> None:
        assert step_gate.acquire(timeout=20)

    @DBOS.workflow()
    def writer() -> str:
        for i in range(5):
            wait_turn()
            DBOS.write_stream("numbers", i)
        DBOS.close_stream("numbers")
        return "done"

    with SetWorkflowID("writer"):
        handle = DBOS.start_workflow(writer)
    seen = []
    step_gate.release()
    for value in DBOS.read_stream("writer", "numbers"):
        seen.append(value)
        step_gate.release()  # the writer produces the next value only after we read one
    assert seen == [0, 1, 2, 3, 4]
    assert handle.get_result() == "done"


def test_stream_ends_when_its_writer_ends_without_closing(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def unclosed() -> None:
        DBOS.write_stream("s", "only")

    with SetWorkflowID("unclosed"):
        unclosed()
    assert list(DBOS.read_stream("unclosed", "s")) == ["only"]


def test_stream_writes_are_not_repeated_on_replay(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def twice() -> None:
        DBOS.write_stream("s", "a")
        DBOS.write_stream("s", "b")
        DBOS.close_stream("s")

    with SetWorkflowID("twice"):
        twice()
    mark_pending(db_url, "twice")
    relaunch(db_url)
    DBOS.retrieve_workflow("twice").get_result()
    assert list(DBOS.read_stream("twice", "s")) == ["a", "b"]
