"""Crash program: a workflow that sends a message to another workflow, then blocks.

Usage: ``python -m tests.crash.programs.forwarder URL MILESTONES start|recover WORKFLOW_ID
INBOX_ID``. ``start`` mode starts the workflow ``inbox`` (ID ``INBOX_ID``), which receives one
message on topic ``greetings`` and returns it, then runs the workflow ``forwarder``: the step
``prepare`` (effect ``prepare``) makes the message, ``DBOS.send`` sends it to the inbox, and
the step ``after_send`` records the effect ``after_send`` and the milestone ``sent`` and, in
``start`` mode, blocks until killed. ``recover`` mode waits for both workflows to end, the
forwarder first, and records each outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import (
    PROGRAM_WAIT_SEC,
    ProgramContext,
    block_forever,
    configure_messaging,
    parser,
    start_program,
)

TOPIC = "greetings"
MESSAGE = "hello inbox"


def define(
    program: ProgramContext, *, block: bool
) -> tuple[Callable[[str], str], Callable[[], str]]:
    """Register the forwarder, its steps and the inbox; return (forwarder, inbox)."""
    effects, milestones = program.effects, program.milestones

    @DBOS.workflow(name="inbox")
    def inbox() -> str:
        message: str = DBOS.recv(TOPIC, timeout_seconds=PROGRAM_WAIT_SEC)
        return message

    @DBOS.step(name="prepare")
    def prepare() -> str:
        effects.record("prepare")
        return MESSAGE

    @DBOS.step(name="after_send")
    def after_send() -> None:
        effects.record("after_send")
        milestones.record("sent")
        if block:
            block_forever()

    @DBOS.workflow(name="forwarder")
    def forwarder(inbox_id: str) -> str:
        message = prepare()
        DBOS.send(inbox_id, message, topic=TOPIC)
        after_send()
        return message

    return forwarder, inbox


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("inbox_id")
    program = start_program(arguments)
    forwarder, inbox = define(program, block=program.args.mode == "start")
    configure_messaging(program)
    DBOS.launch()
    workflow_id, inbox_id = program.args.workflow_id, program.args.inbox_id
    if program.args.mode == "start":
        with SetWorkflowID(inbox_id):
            DBOS.start_workflow(inbox)
        with SetWorkflowID(workflow_id):
            program.record_outcome(output=forwarder(inbox_id))  # not reached: killed after send
    else:
        program.finish_recovered(workflow_id)
        program.finish_recovered(inbox_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
