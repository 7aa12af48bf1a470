"""A program SIGKILLed mid-workflow resumes at the next launch, with exactly-once effects.

Each test starts a program (``tests/crash/programs``), waits for a milestone, kills its process
group, restarts it in ``recover`` mode, and judges the run from the database: the effects table
counts step-body runs (committed at once, so runs cut short by the kill are counted too) and
Perdure's tables hold the checkpoints and statuses.
"""

from __future__ import annotations

import time

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

WORKFLOW_ID = "crash-wf"


def test_kill_mid_step(witness: Witness, programs: Programs) -> None:
    first = programs.start("four_steps", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: witness.milestones.count("step3-started") >= 1,
        what="step 3 to start",
        watch=[first],
    )
    first.kill()
    assert witness.status(WORKFLOW_ID) == "PENDING"
    assert witness.steps(WORKFLOW_ID) == [(1, "step1"), (2, "step2")]

    programs.start("four_steps", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)

    assert witness.effects.counts() == {"step1": 1, "step2": 1, "step3": 2, "step4": 1}
    assert witness.steps(WORKFLOW_ID) == [(1, "step1"), (2, "step2"), (3, "step3"), (4, "step4")]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.recovery_attempts) == ("SUCCESS", 2)
    assert witness.outcomes() == [{"by": "", "output": [101, 103, 106, 110], "error": None}]


def test_kill_mid_transaction(witness: Witness, programs: Programs) -> None:
    first = programs.start("ledger", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: witness.milestones.count("rows-inserted") >= 1,
        what="the transaction to insert its rows",
        watch=[first],
    )
    first.kill()
    assert witness.db.execute("SELECT entry FROM ledger") == []  # rolled back with the process
    assert witness.steps(WORKFLOW_ID) == []

    programs.start("ledger", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)

    entries = sorted(entry for (entry,) in witness.db.execute("SELECT entry FROM ledger"))
    assert entries == ["closed-after-3", "row-0", "row-1", "row-2"]
    # The body ran twice (killed once, then re-run) but committed once.
    assert witness.milestones.count("rows-inserted") == 2
    assert witness.steps(WORKFLOW_ID) == [(1, "insert_rows"), (2, "close_ledger")]
    assert witness.status(WORKFLOW_ID) == "SUCCESS"
    assert witness.outcomes() == [{"by": "", "output": 3, "error": None}]


SLEEP_SECONDS = 4.0
# Late enough in the sleep that a recovery sleeping the whole duration again would end past
# the upper bound below, even with a fast restart.
KILL_AFTER_MS = 2500


def test_kill_during_durable_sleep(witness: Witness, programs: Programs) -> None:
    first = programs.start("sleeper", *witness.argv, "start", WORKFLOW_ID, str(SLEEP_SECONDS))
    sleep_started_ms = wait_until(
        lambda: witness.step_started_ms(WORKFLOW_ID, "DBOS.sleep"),
        what="the durable sleep to be checkpointed",
        watch=[first],
    )
    wait_until(
        lambda: time.time_ns() // 1_000_000 >= sleep_started_ms + KILL_AFTER_MS,
        what=f"{KILL_AFTER_MS} ms into the sleep",
        watch=[first],
    )
    first.kill()
    assert witness.effects.counts() == {"start": 1}

    programs.start(
        "sleeper", *witness.argv, "recover", WORKFLOW_ID, str(SLEEP_SECONDS)
    ).expect_exit(0)

    [(start_pid, started_ms)] = witness.effects.rows("start")
    [(end_pid, ended_ms)] = witness.effects.rows("end")
    assert start_pid != end_pid, "the end step should run in the restarted process"
    elapsed_ms = ended_ms - started_ms
    assert SLEEP_SECONDS * 1000 <= elapsed_ms < 6500, f"slept {elapsed_ms} ms in all"
    assert witness.steps(WORKFLOW_ID) == [(1, "mark_start"), (2, "DBOS.sleep"), (3, "mark_end")]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.recovery_attempts) == ("SUCCESS", 2)
    [outcome] = witness.outcomes()
    assert SLEEP_SECONDS * 1000 <= outcome["output"] < 6500


def test_kill_parent_with_children(witness: Witness, programs: Programs) -> None:
    first = programs.start("family", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: (
            witness.milestones.count("child2-blocked") >= 1
            and witness.milestones.count("child4-blocked") >= 1
            and witness.status(f"{WORKFLOW_ID}-1") == "SUCCESS"
            and witness.status(f"{WORKFLOW_ID}-3") == "SUCCESS"
        ),
        what="children 1 and 3 to finish while children 2 and 4 are blocked mid-step",
        watch=[first],
    )
    first.kill()

    programs.start("family", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)

    counts = witness.effects.counts()
    for n in (1, 2, 3, 4):
        # Children 2 and 4 were killed inside their work step: it and their body ran twice.
        # Completed steps and finished children never run again.
        runs = 2 if n in (2, 4) else 1
        assert counts[f"child{n}-begin"] == 1, n
        assert counts[f"child{n}-work"] == runs, n
        assert counts[f"child{n}-end"] == 1, n
        assert counts[f"child{n}-body"] == runs, n
    assert counts["parent-body"] == 2
    parts = ("begin", "work", "end", "body")
    assert set(counts) == {f"child{n}-{part}" for n in (1, 2, 3, 4) for part in parts} | {
        "parent-body"
    }

    workflows = witness.workflows()
    children = {f"{WORKFLOW_ID}-{position}" for position in range(1, 5)}
    assert set(workflows) == {WORKFLOW_ID} | children
    assert all(info.status == "SUCCESS" for info in workflows.values()), workflows
    for child_id in children:
        assert (workflows[child_id].name, workflows[child_id].parent_workflow_id) == (
            "child",
            WORKFLOW_ID,
        )
    assert [name for _, name in witness.steps(WORKFLOW_ID)] == [
        *["child"] * 4,
        *["DBOS.getResult"] * 3,
    ]
    assert witness.outcomes() == [{"by": "", "output": [10, 20, 30, 40], "error": None}]
