"""Operations count from 1, as in DBOS; workflows recorded 0-based by Perdure 0.1 still replay."""

from __future__ import annotations

import pytest

from perdure import DBOS, SetWorkflowID
from tests.fixtures.app import wait_until
from tests.integration.system_tables import mark_pending, relaunch, run_sql, step_rows


@pytest.fixture
def counted(dbos: type[DBOS]) -> tuple[list[tuple[str, int | None]], object]:
    seen: list[tuple[str, int | None]] = []

    @DBOS.step()
    def first() -> str:
        seen.append(("first", DBOS.step_id))
        return "a"

    @DBOS.step(retries_allowed=True, max_attempts=2)
    def second() -> str:
        seen.append(("second", DBOS.step_id))
        return "b"

    @DBOS.workflow()
    def child() -> str:
        return "c"

    @DBOS.workflow()
    def numbered() -> str:
        out = first() + second()
        handle = DBOS.start_workflow(child)
        return out + handle.get_result()

    return seen, numbered


def test_step_ids_start_at_one(counted: tuple[list[tuple[str, int | None]], object]) -> None:
    seen, numbered = counted
    with SetWorkflowID("num-1"):
        assert numbered() == "abc"  # type: ignore[operator]
    assert seen == [("first", 1), ("second", 2)]
    steps = DBOS.list_workflow_steps("num-1")
    assert [(s["function_id"], s["function_name"]) for s in steps][:3] == [
        (1, steps[0]["function_name"]),
        (2, steps[1]["function_name"]),
        (3, steps[2]["function_name"]),
    ]
    assert steps[2]["child_workflow_id"] == "num-1-3"  # the child's ID names its position
    assert DBOS.step_id is None  # outside a step


def test_fork_at_step_one_reruns_every_step(
    counted: tuple[list[tuple[str, int | None]], object],
) -> None:
    seen, numbered = counted
    with SetWorkflowID("num-2"):
        numbered()  # type: ignore[operator]
    seen.clear()
    assert DBOS.fork_workflow("num-2", 1).get_result() == "abc"
    assert seen == [("first", 1), ("second", 2)]

    seen.clear()
    assert DBOS.fork_workflow("num-2", 2).get_result() == "abc"  # keeps step 1
    assert seen == [("second", 2)]

    seen.clear()
    assert DBOS.fork_workflow("num-2", -1).get_result() == "abc"  # below 1: from the start
    assert seen == [("first", 1), ("second", 2)]


def test_a_fork_in_a_step_leaves_set_workflow_id_to_the_next_workflow(
    counted: tuple[list[tuple[str, int | None]], object],
) -> None:
    _, numbered = counted
    with SetWorkflowID("num-src"):
        numbered()  # type: ignore[operator]

    @DBOS.step()
    def fork_step() -> str:
        return DBOS.fork_workflow("num-src", 1).workflow_id

    @DBOS.workflow()
    def parent() -> list[str]:
        with SetWorkflowID("num-next"):
            forked = fork_step()  # a step's fork does not take the block's ID
            return [forked, DBOS.start_workflow(numbered).workflow_id]

    forked, started = parent()
    assert started == "num-next"
    assert forked != "num-next"
    assert DBOS.retrieve_workflow(forked).get_result() == "abc"


def test_workflow_recorded_zero_based_replays_without_rerunning(
    counted: tuple[list[tuple[str, int | None]], object], db_url: str
) -> None:
    seen, numbered = counted
    with SetWorkflowID("num-old"):
        numbered()  # type: ignore[operator]
    # Rewrite its record as Perdure 0.1 numbered it (0, 1, 2), then make it look interrupted
    # after its second step: the child-start record and everything after are dropped.
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = :w AND function_id >= 3",
            w="num-old")  # fmt: skip
    run_sql(db_url, "UPDATE {p}operation_outputs SET function_id = function_id - 1 "
            "WHERE workflow_id = :w", w="num-old")  # fmt: skip
    assert [r.function_id for r in step_rows(db_url, "num-old")] == [0, 1]
    mark_pending(db_url, "num-old")
    seen.clear()
    relaunch(db_url)
    assert DBOS.retrieve_workflow("num-old").get_result() == "abc"
    assert seen == []  # both recorded steps replayed, none re-ran
    ids = wait_until(lambda: [r.function_id for r in step_rows(db_url, "num-old")] or None)
    assert ids[:3] == [0, 1, 2]  # it kept counting from 0: the child start is at 2


def test_zero_based_workflow_replays_what_0_1_did_not_record(dbos: type[DBOS], db_url: str) -> None:
    # Perdure 0.1 recorded a zero-length sleep but not a stream read; a workflow it recorded
    # must replay the same way after the upgrade.
    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("s", "v1")
        DBOS.close_stream("s")

    ran: list[str] = []

    @DBOS.step()
    def after() -> str:
        ran.append("after")
        return "after"

    @DBOS.workflow()
    def reader(source: str) -> str:
        DBOS.sleep(0)
        values = list(DBOS.read_stream(source, "s"))
        return ",".join(values) + "," + after()

    with SetWorkflowID("writer-1"):
        writer()
    with SetWorkflowID("reader-1"):
        assert reader("writer-1") == "v1,after"
    # Today: no sleep step, one stream-read record per value and one for the end, then the step.
    names = [r.function_name for r in step_rows(db_url, "reader-1")]
    assert names[-1] == after.__qualname__
    assert "DBOS.sleep" not in names
    # As 0.1 recorded it: the sleep at 0, the step at 1, nothing for the read.
    run_sql(db_url, "DELETE FROM {p}operation_outputs WHERE workflow_id = 'reader-1'")
    payloads = dbos._require_runtime().engine.payloads
    wake_time = payloads.encode(0, what="a wake-up time")
    recorded = payloads.encode("recorded", what="a step output")
    for position, name, output in ((0, "DBOS.sleep", wake_time), (1, after.__qualname__, recorded)):
        run_sql(db_url, "INSERT INTO {p}operation_outputs (workflow_id, function_id, "
                "function_name, output, serialization, started_at_epoch_ms, "
                "completed_at_epoch_ms, owner_token) SELECT workflow_id, :pos, :name, :output, "
                "serialization, 0, 0, owner_token FROM {p}workflow_status "
                "WHERE workflow_id = 'reader-1'",
                pos=position, name=name, output=output)  # fmt: skip
    mark_pending(db_url, "reader-1")
    ran.clear()
    relaunch(db_url)
    assert DBOS.retrieve_workflow("reader-1").get_result() == "v1,recorded"
    assert ran == []  # the recorded step replayed at position 1, after the sleep at 0
