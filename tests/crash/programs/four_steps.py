"""Crash program: a workflow of four steps; on the first run the third step blocks until killed.

Usage: ``python -m tests.crash.programs.four_steps URL MILESTONES start|recover WORKFLOW_ID``.
Each step body records an effect; step 3 then records the milestone ``step3-started`` and, in
``start`` mode, blocks forever. ``recover`` mode lets the launch-time recovery finish it.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, block_forever, parser, start_program


def define(program: ProgramContext, *, block_in_step3: bool) -> Callable[[int], list[int]]:
    """Register the workflow and its steps; each step adds to the previous step's output."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="step1")
    def step1(base: int) -> int:
        effects.record("step1")
        return base + 1

    @DBOS.step(name="step2")
    def step2(previous: int) -> int:
        effects.record("step2")
        return previous + 2

    @DBOS.step(name="step3")
    def step3(previous: int) -> int:
        effects.record("step3")
        milestones.record("step3-started")
        if block_in_step3:
            block_forever()
        return previous + 3

    @DBOS.step(name="step4")
    def step4(previous: int) -> int:
        effects.record("step4")
        return previous + 4

    @DBOS.workflow(name="four_steps")
    def four_steps(base: int) -> list[int]:
        first = step1(base)
        second = step2(first)
        third = step3(second)
        return [first, second, third, step4(third)]

    return four_steps


def main() -> None:
    program = start_program(parser(__doc__))
    workflow = define(program, block_in_step3=program.args.mode == "start")
    program.configure()
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            program.record_outcome(output=workflow(100))  # not reached: killed in step 3
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
