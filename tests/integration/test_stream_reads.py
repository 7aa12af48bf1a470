"""Reading streams from an offset, with timeouts, and durably inside workflows."""

from __future__ import annotations

import asyncio
import threading

import pytest

from perdure import DBOS, SetWorkflowID
from perdure.error import (
    DBOSNonExistentWorkflowError,
    DBOSStreamNondeterminismError,
    DBOSStreamTimeoutError,
)
from tests.integration.system_tables import mark_pending, relaunch, run_sql

# Appends a copy of the value at offset 0 as a new last value: the stream grows behind the
# back of a workflow that already read it.
GROW = (
    'INSERT INTO {p}streams (workflow_id, key, "offset", value, serialization, closed) '
    'SELECT workflow_id, key, 1, value, serialization, 0 FROM {p}streams WHERE "offset" = 0'
)


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()


@pytest.fixture
def paused_writer(dbos: type[DBOS], gate: threading.Event) -> None:
    """Workflow ``paused`` writes "first" to stream "s", then waits for ``gate``, then ends."""

    @DBOS.step()
    def wait_gate() -> None:
        assert gate.wait(30)

    @DBOS.workflow()
    def paused() -> None:
        DBOS.write_stream("s", "first")
        wait_gate()

    with SetWorkflowID("paused"):
        DBOS.start_workflow(paused)


def test_reads_start_at_an_offset(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def counter() -> None:
        for n in range(5):
            DBOS.write_stream("n", n)
        DBOS.close_stream("n")

    with SetWorkflowID("counter"):
        counter()
    assert list(DBOS.read_stream("counter", "n", offset=2)) == [2, 3, 4]
    assert list(DBOS.read_stream("counter", "n", offset=5)) == []  # the close
    assert list(DBOS.read_stream("counter", "n", offset=9)) == []  # past it: ended writer
    assert DBOS.read_stream_offset("counter", "n", 0) == 0
    assert DBOS.read_stream_offset("counter", "n", 4, timeout_seconds=1) == 4
    with pytest.raises(DBOSStreamTimeoutError, match="ended") as ended:
        DBOS.read_stream_offset("counter", "n", 5)
    assert (ended.value.workflow_id, ended.value.key, ended.value.timeout_seconds) == (
        "counter",
        "n",
        None,
    )
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.read_stream_offset("nobody", "n", 0)


def test_a_read_times_out_when_no_next_value_arrives(
    paused_writer: None, gate: threading.Event
) -> None:
    values = DBOS.read_stream("paused", "s", timeout_seconds=0.2, polling_interval_sec=0.01)
    assert next(values) == "first"
    with pytest.raises(DBOSStreamTimeoutError, match=r"within 0\.2 seconds") as timed_out:
        next(values)
    assert timed_out.value.timeout_seconds == 0.2
    assert timed_out.value.dbos_error_code == 16
    with pytest.raises(DBOSStreamTimeoutError):
        DBOS.read_stream_offset("paused", "s", 1, timeout_seconds=0)
    gate.set()
    # With no timeout the read waits for the writer, and ends when it does.
    assert list(DBOS.read_stream("paused", "s")) == ["first"]
    assert DBOS.retrieve_workflow("paused").get_result() is None


def test_bad_read_arguments_are_refused(dbos: type[DBOS]) -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        next(DBOS.read_stream("w", "s", timeout_seconds=-1))
    with pytest.raises(ValueError, match="polling_interval_sec"):
        DBOS.read_stream_offset("w", "s", 0, polling_interval_sec=0)
    with pytest.raises(ValueError, match="offset"):
        next(DBOS.read_stream("w", "s", offset=-1))


def test_reads_inside_a_workflow_are_replayed_as_first_read(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("s", "a")  # ends without closing

    @DBOS.workflow()
    def reader() -> list[object]:
        return [*DBOS.read_stream("writer", "s"), DBOS.read_stream_offset("writer", "s", 0)]

    with SetWorkflowID("writer"):
        writer()
    with SetWorkflowID("reader"):
        assert reader() == ["a", "a"]
    names = [s["function_name"] for s in DBOS.list_workflow_steps("reader")]
    assert names == ["DBOS.readStream", "DBOS.readStream", "DBOS.readStreamOffset"]
    run_sql(db_url, GROW)
    assert list(DBOS.read_stream("writer", "s")) == ["a", "a"]  # the stream grew...
    mark_pending(db_url, "reader")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("reader").get_result() == ["a", "a"]  # ...not the replay


def test_a_timeout_inside_a_workflow_is_replayed(
    paused_writer: None, gate: threading.Event, db_url: str
) -> None:
    @DBOS.workflow()
    def impatient() -> str:
        try:
            return str(DBOS.read_stream_offset("paused", "s", 1, timeout_seconds=0.1))
        except DBOSStreamTimeoutError:
            return "timed out"

    with SetWorkflowID("impatient"):
        assert impatient() == "timed out"
    [step] = DBOS.list_workflow_steps("impatient")
    assert step["function_name"] == "DBOS.readStreamOffset"
    assert isinstance(step["error"], DBOSStreamTimeoutError)
    gate.set()
    assert list(DBOS.read_stream("paused", "s")) == ["first"]
    run_sql(db_url, GROW)  # offset 1 exists now, and the writer has ended
    mark_pending(db_url, "impatient")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("impatient").get_result() == "timed out"


def test_concurrent_reads_in_one_workflow_are_refused(
    paused_writer: None, gate: threading.Event
) -> None:
    @DBOS.workflow()
    async def two_readers() -> list[str]:
        results = await asyncio.gather(
            DBOS.read_stream_offset_async("paused", "s", 1, timeout_seconds=0.3),
            DBOS.read_stream_offset_async("paused", "s", 1, timeout_seconds=0.3),
            return_exceptions=True,
        )
        return [type(r).__name__ for r in results]

    result = asyncio.run(two_readers())
    assert result == ["DBOSStreamTimeoutError", "DBOSStreamNondeterminismError"]
    assert DBOSStreamNondeterminismError("w", "s").dbos_error_code == 17
    gate.set()


def test_async_reads_from_an_offset(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    async def letters() -> list[object]:
        for letter in "abc":
            await DBOS.write_stream_async("l", letter)
        await DBOS.close_stream_async("l")
        return [
            await DBOS.read_stream_offset_async("letters", "l", 2),
            [v async for v in DBOS.read_stream_async("letters", "l", offset=1)],
        ]

    async def main() -> list[object]:
        with SetWorkflowID("letters"):
            read_by_workflow = await letters()
        outside = [v async for v in DBOS.read_stream_async("letters", "l", offset=2)]
        return [read_by_workflow, outside, await DBOS.read_stream_offset_async("letters", "l", 0)]

    assert asyncio.run(main()) == [["c", ["b", "c"]], ["c"], "a"]
