"""Crash program: a workflow whose ``recv`` waits out its timeout (nobody sends to it).

Usage: ``python -m tests.crash.programs.recv_timeout URL MILESTONES start|recover WORKFLOW_ID
SECONDS``. The steps ``mark_start`` and ``mark_end`` record the effects ``start`` and ``end``
around ``DBOS.recv(timeout_seconds=SECONDS)``; the workflow returns what ``recv`` returned and
how many milliseconds passed between the two steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import (
    ProgramContext,
    block_forever,
    configure_messaging,
    epoch_ms,
    parser,
    start_program,
)


def define(program: ProgramContext) -> Callable[[float], dict[str, Any]]:
    """Register the workflow and its two timestamp steps."""
    effects = program.effects

    @DBOS.step(name="mark_start")
    def mark_start() -> int:
        effects.record("start")
        return epoch_ms()

    @DBOS.step(name="mark_end")
    def mark_end() -> int:
        effects.record("end")
        return epoch_ms()

    @DBOS.workflow(name="recv_timeout")
    def recv_timeout(seconds: float) -> dict[str, Any]:
        started = mark_start()
        message = DBOS.recv(timeout_seconds=seconds)
        return {"message": message, "waited_ms": mark_end() - started}

    return recv_timeout


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("seconds", type=float)
    program = start_program(arguments)
    workflow = define(program)
    configure_messaging(program)
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            DBOS.start_workflow(workflow, program.args.seconds)
        block_forever()  # the test kills this run during the wait
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
