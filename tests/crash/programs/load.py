"""Crash program: many workflows of several steps at once, surviving a database restart.

Usage: ``python -m tests.crash.programs.load URL MILESTONES WORKFLOWS STEPS``.
Starts workflows ``job-0`` .. ``job-{WORKFLOWS-1}`` from a loop; each runs STEPS steps, at
positions 1 .. STEPS (the workflow's operations count from 1), that record the effect
``job{i}-step{p}`` and return their position. The step at ``GATE_POSITION`` (the third) of
every workflow records the
milestone ``at-gate`` and waits for the test's ``server-down``, then records ``gate-passed``
and returns, so every workflow checkpoints that step while the server is down. The program
waits for all results and records them as its outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, parser, start_program

GATE_POSITION = 3


def define(program: ProgramContext) -> Callable[[int, int], int]:
    """Register the job workflow and its step."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="load_step")
    def load_step(index: int, position: int) -> int:
        effects.record(f"job{index}-step{position}")
        if position == GATE_POSITION:
            milestones.record("at-gate", str(index))
            milestones.wait_for("server-down")
            milestones.record("gate-passed", str(index))
        return position

    @DBOS.workflow(name="load_job")
    def load_job(index: int, steps: int) -> int:
        return sum(load_step(index, position) for position in range(1, steps + 1))

    return load_job


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflows", type=int)
    arguments.add_argument("steps", type=int)
    program = start_program(arguments)
    workflow = define(program)
    program.configure()
    DBOS.launch()
    handles = []
    for index in range(program.args.workflows):
        with SetWorkflowID(f"job-{index}"):
            handles.append(DBOS.start_workflow(workflow, index, program.args.steps))
    program.record_outcome(output=[handle.get_result() for handle in handles])
    DBOS.destroy()


if __name__ == "__main__":
    main()
