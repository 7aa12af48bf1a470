"""A workflow that kills its process every time is dead-lettered after its recovery attempts."""

from __future__ import annotations

import signal

import pytest

from perdure import DBOS
from perdure.error import DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
from tests.crash.harness import Programs, Witness
from tests.crash.programs.self_killer import MAX_RECOVERY_ATTEMPTS

pytestmark = pytest.mark.slow

WORKFLOW_ID = "doomed-wf"
KILLED = -signal.SIGKILL


def test_dead_letter_after_max_recovery_attempts(witness: Witness, programs: Programs) -> None:
    # The first run and each allowed recovery execute the step, which kills the process.
    programs.start("self_killer", *witness.argv, "start", WORKFLOW_ID).expect_exit(KILLED)
    assert witness.workflows()[WORKFLOW_ID].recovery_attempts == 1
    for attempt in range(2, MAX_RECOVERY_ATTEMPTS + 2):
        programs.start("self_killer", *witness.argv, "recover", WORKFLOW_ID).expect_exit(KILLED)
        info = witness.workflows()[WORKFLOW_ID]
        assert (info.status, info.recovery_attempts) == ("PENDING", attempt)
    assert witness.effects.counts() == {"plug-pulled": 1 + MAX_RECOVERY_ATTEMPTS}

    # One recovery too many: the workflow is dead-lettered instead of run.
    programs.start("self_killer", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.recovery_attempts) == (
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
        MAX_RECOVERY_ATTEMPTS + 2,
    )

    # A later launch leaves it alone.
    programs.start("self_killer", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)
    assert witness.effects.counts() == {"plug-pulled": 1 + MAX_RECOVERY_ATTEMPTS}
    assert witness.workflows()[WORKFLOW_ID].recovery_attempts == MAX_RECOVERY_ATTEMPTS + 2
    error = {"by": "", "output": None, "error": "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded"}
    assert witness.outcomes() == [error, error]

    # Awaiting it from another process raises the dead-letter error.
    DBOS(config={"name": "crash-test", "system_database_url": witness.db.url})
    try:
        DBOS.launch()
        handle = DBOS.retrieve_workflow(WORKFLOW_ID)
        with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded, match=WORKFLOW_ID):
            handle.get_result()
        status = DBOS.get_workflow_status(WORKFLOW_ID)
        assert status is not None
        assert status.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    finally:
        DBOS.destroy(destroy_registry=True)
