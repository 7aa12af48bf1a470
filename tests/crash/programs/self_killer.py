"""Crash program: a workflow whose step SIGKILLs its own process, every time it runs.

Usage: ``python -m tests.crash.programs.self_killer URL MILESTONES start|recover WORKFLOW_ID``.
``start`` runs the workflow (``max_recovery_attempts=2``) and dies in its step; each
``recover`` run dies the same way while recovery keeps restarting it, until the workflow is
dead-lettered: then the run records the outcome and exits 0.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, parser, start_program

MAX_RECOVERY_ATTEMPTS = 2


def define(program: ProgramContext) -> Callable[[], str]:
    """Register the doomed workflow and its fatal step."""
    effects = program.effects

    @DBOS.step(name="pull_the_plug")
    def pull_the_plug() -> None:
        effects.record("plug-pulled")
        os.kill(os.getpid(), signal.SIGKILL)

    @DBOS.workflow(name="doomed", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
    def doomed() -> str:
        pull_the_plug()
        return "survived"

    return doomed


def main() -> None:
    program = start_program(parser(__doc__))
    workflow = define(program)
    program.configure()
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            program.record_outcome(output=workflow())  # not reached: the step kills us
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
