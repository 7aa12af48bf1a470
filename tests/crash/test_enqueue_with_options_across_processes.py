"""`DBOS.enqueue_workflow_with_options`: an application enqueues, by name, a workflow that only
another process implements; that process runs it, also as the child of a workflow here."""

from __future__ import annotations

import pytest

from perdure import DBOS, EnqueueOptions, SetWorkflowID
from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow


def test_the_app_enqueues_a_workflow_another_process_implements(
    witness: Witness, programs: Programs
) -> None:
    DBOS(config={"name": "crash-test", "system_database_url": witness.db.url,
                 "executor_id": "exec-here"})  # fmt: skip
    DBOS.launch()
    try:

        @DBOS.workflow(name="delegator")
        def delegator(i: int) -> int:
            options: EnqueueOptions = {"workflow_name": "job", "queue_name": "shared"}
            return int(DBOS.enqueue_workflow_with_options(options, i).get_result()) + 100

        # Before any process implements "job" or declares its queue: it waits, ENQUEUED.
        first = DBOS.enqueue_workflow_with_options(
            {"workflow_name": "job", "queue_name": "shared", "workflow_id": "job-0"}, 0
        )
        worker = programs.start(
            "queue_worker", *witness.argv, "exec-a", "serve", "0", "concurrency"
        )
        wait_until(
            lambda: witness.milestones.count("ready") == 1, what="the worker", watch=[worker]
        )
        assert first.get_result() == 0
        with SetWorkflowID("delegator-1"):
            assert delegator(1) == 101
    finally:
        DBOS.destroy(destroy_registry=True)
    witness.milestones.record("stop")
    worker.expect_exit(0)
    workflows = witness.workflows()
    assert workflows["job-0"].executor_id == "exec-a"
    child = workflows["delegator-1-1"]
    assert (child.name, child.executor_id, child.parent_workflow_id) == (
        "job",
        "exec-a",
        "delegator-1",
    )
    assert workflows["delegator-1"].executor_id == "exec-here"
    counts = witness.effects.counts()
    assert (counts["start-0"], counts["start-1"]) == (1, 1)
