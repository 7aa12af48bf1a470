"""Crash program: one of two processes that start the same workflow ID at the same moment.

Usage: ``python -m tests.crash.programs.contender URL MILESTONES NAME EXECUTOR_ID WORKFLOW_ID``.
After launching, the process records ``ready`` and waits until two ``ready`` rows exist (a
barrier through the milestones file), records ``calling`` and calls the workflow. The body
records the effect ``workflow-body``; its step records ``step-body`` and the milestone
``in-step`` (detail: this process's name), then waits for the test's ``release`` milestone.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, parser, start_program


def define(program: ProgramContext, name: str) -> Callable[[], str]:
    """Register the contested workflow and its slow step."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="slow_part")
    def slow_part() -> str:
        effects.record("step-body")
        milestones.record("in-step", name)
        milestones.wait_for("release")
        return f"computed-by-{name}"

    @DBOS.workflow(name="contested")
    def contested() -> str:
        effects.record("workflow-body")
        return slow_part()

    return contested


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("name")
    arguments.add_argument("executor_id")
    arguments.add_argument("workflow_id")
    program = start_program(arguments)
    name = program.args.name
    workflow = define(program, name)
    program.configure(executor_id=program.args.executor_id)
    DBOS.launch()
    program.milestones.record("ready", name)
    program.milestones.wait_for("ready", count=2)
    program.milestones.record("calling", name)
    with SetWorkflowID(program.args.workflow_id):
        result = workflow()
    program.record_outcome(by=name, output=result)
    DBOS.destroy()


if __name__ == "__main__":
    main()
