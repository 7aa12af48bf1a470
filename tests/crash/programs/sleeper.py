"""Crash program: a workflow that records its start, sleeps durably, then records its end.

Usage: ``python -m tests.crash.programs.sleeper URL MILESTONES start|recover WORKFLOW_ID SECONDS``.
Effects ``start`` and ``end`` carry the time each step body ran; the workflow returns how many
milliseconds passed between the two, as seen by the steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, block_forever, parser, start_program


def define(program: ProgramContext) -> Callable[[float], int]:
    """Register the workflow and its two timestamp steps."""
    effects = program.effects

    @DBOS.step(name="mark_start")
    def mark_start() -> int:
        effects.record("start")
        return time.time_ns() // 1_000_000

    @DBOS.step(name="mark_end")
    def mark_end() -> int:
        effects.record("end")
        return time.time_ns() // 1_000_000

    @DBOS.workflow(name="sleeper")
    def sleeper(seconds: float) -> int:
        started = mark_start()
        DBOS.sleep(seconds)
        return mark_end() - started

    return sleeper


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("seconds", type=float)
    program = start_program(arguments)
    workflow = define(program)
    program.configure()
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            DBOS.start_workflow(workflow, program.args.seconds)
        block_forever()  # the test kills this run during the sleep
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
