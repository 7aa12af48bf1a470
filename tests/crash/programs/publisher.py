"""Crash program: a workflow that publishes events in two stages, waiting for the test between.

Usage: ``python -m tests.crash.programs.publisher URL MILESTONES WORKFLOW_ID``. The workflow sets
the event ``stage`` to 1, then (in the step ``await_release``) records the milestone
``stage-1-set`` and waits for the test's ``release`` milestone, then sets ``stage`` to 2 and
``done`` to True, and returns ``"published"``.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import (
    ProgramContext,
    configure_messaging,
    parser,
    start_program,
)


def define(program: ProgramContext) -> Callable[[], str]:
    """Register the publishing workflow and its waiting step."""
    milestones = program.milestones

    @DBOS.step(name="await_release")
    def await_release() -> None:
        milestones.record("stage-1-set")
        milestones.wait_for("release")

    @DBOS.workflow(name="publisher")
    def publisher() -> str:
        DBOS.set_event("stage", 1)
        await_release()
        DBOS.set_event("stage", 2)
        DBOS.set_event("done", True)
        return "published"

    return publisher


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflow_id")
    program = start_program(arguments)
    workflow = define(program)
    configure_messaging(program, executor_id="publisher")
    DBOS.launch()
    with SetWorkflowID(program.args.workflow_id):
        program.record_outcome(by="publisher", output=workflow())
    DBOS.destroy()


if __name__ == "__main__":
    main()
