"""`DBOSClient.enqueue` from this process feeds a queue served by a separate application process."""

from __future__ import annotations

import pytest

from perdure import DBOSClient
from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow


def test_client_enqueues_into_a_queue_served_by_another_process(
    witness: Witness, programs: Programs
) -> None:
    worker = programs.start("queue_worker", *witness.argv, "exec-a", "serve", "0", "concurrency")
    wait_until(lambda: witness.milestones.count("ready") == 1, what="the worker", watch=[worker])
    client = DBOSClient(witness.db.url)
    try:
        handles = [
            client.enqueue(
                {"workflow_name": "job", "queue_name": "shared", "workflow_id": f"job-{i}"}, i
            )
            for i in range(5)
        ]
        assert [h.get_result() for h in handles] == [0, 1, 2, 3, 4]
    finally:
        client.destroy()
    witness.milestones.record("stop")
    worker.expect_exit(0)
    jobs = {wid: w for wid, w in witness.workflows().items() if wid.startswith("job-")}
    assert {w.executor_id for w in jobs.values()} == {"exec-a"}  # run by the app, not here
    assert all(witness.effects.counts()[f"start-{i}"] == 1 for i in range(5))


def test_client_resume_and_fork_run_in_another_process(
    witness: Witness, programs: Programs
) -> None:
    worker = programs.start("queue_worker", *witness.argv, "exec-a", "serve", "0", "concurrency")
    wait_until(lambda: witness.milestones.count("ready") == 1, what="the worker", watch=[worker])
    client = DBOSClient(witness.db.url)
    try:
        first = client.enqueue({"workflow_name": "job", "queue_name": "shared"}, 7)
        assert first.get_result() == 7
        # Make it look cancelled before its last step was recorded.
        system = witness.db.system
        witness.db.execute(
            f"UPDATE {system}workflow_status SET status = 'CANCELLED', output = NULL "
            "WHERE workflow_id = ?",
            (first.workflow_id,),
        )
        witness.db.execute(
            f"DELETE FROM {system}operation_outputs WHERE workflow_id = ? AND function_id = 2",
            (first.workflow_id,),
        )
        assert client.resume_workflow(first.workflow_id).get_result() == 7
        forked = client.fork_workflow(first.workflow_id, 2)
        assert forked.get_result() == 7
    finally:
        client.destroy()
    witness.milestones.record("stop")
    worker.expect_exit(0)
    workflows = witness.workflows()
    assert {workflows[w].executor_id for w in (first.workflow_id, forked.workflow_id)} == {"exec-a"}
    counts = witness.effects.counts()
    assert (counts["start-7"], counts["end-7"]) == (1, 3)  # only the unrecorded step re-ran
