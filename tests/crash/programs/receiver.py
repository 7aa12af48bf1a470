"""Crash program: a workflow that receives one message, notes it, then blocks in a later step.

Usage: ``python -m tests.crash.programs.receiver URL MILESTONES start|recover WORKFLOW_ID``.
The workflow calls ``DBOS.recv("mail", timeout_seconds=60)``; the step ``note`` records the
effect ``received:<message>``; the step ``hold`` records the effect ``hold`` and the milestone
``holding`` and, in ``start`` mode, blocks until killed. It returns the messages it received.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import (
    ProgramContext,
    block_forever,
    configure_messaging,
    parser,
    start_program,
)

TOPIC = "mail"


def define(program: ProgramContext, *, block: bool) -> Callable[[], list[str]]:
    """Register the receiving workflow and its two steps."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="note")
    def note(message: str) -> None:
        effects.record(f"received:{message}")

    @DBOS.step(name="hold")
    def hold() -> None:
        effects.record("hold")
        milestones.record("holding")
        if block:
            block_forever()

    @DBOS.workflow(name="receiver")
    def receiver() -> list[str]:
        message = DBOS.recv(TOPIC, timeout_seconds=60)
        note(message)
        hold()
        return [message]

    return receiver


def main() -> None:
    program = start_program(parser(__doc__))
    workflow = define(program, block=program.args.mode == "start")
    configure_messaging(program)
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            program.record_outcome(output=workflow())  # not reached: killed in ``hold``
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
