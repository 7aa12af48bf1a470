"""Crash program: a workflow that writes a stream in lock-step with a reader in another process.

Usage: ``python -m tests.crash.programs.stream_writer URL MILESTONES WORKFLOW_ID COUNT``. The
workflow writes 0, 1, ... COUNT-1 to the stream ``numbers``; after each write its step
``await_ack`` waits until the effect ``ack-<value>`` exists (the reader records it once it has
read the value), so no value is written before the reader has read the previous one. It then
closes the stream and, in the step ``await_release``, records the milestone ``stream-closed``
and waits for the test's ``release`` milestone before returning COUNT.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import (
    PROGRAM_WAIT_SEC,
    ProgramContext,
    configure_messaging,
    parser,
    poll,
    start_program,
)

STREAM_KEY = "numbers"


def define(program: ProgramContext) -> Callable[[int], int]:
    """Register the writing workflow and its two waiting steps."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="await_ack")
    def await_ack(value: int) -> None:
        poll(
            lambda: effects.rows(f"ack-{value}"),
            timeout=PROGRAM_WAIT_SEC,
            what=f"the reader to acknowledge {value}",
        )

    @DBOS.step(name="await_release")
    def await_release() -> None:
        milestones.record("stream-closed")
        milestones.wait_for("release")

    @DBOS.workflow(name="stream_writer")
    def stream_writer(count: int) -> int:
        for value in range(count):
            DBOS.write_stream(STREAM_KEY, value)
            await_ack(value)
        DBOS.close_stream(STREAM_KEY)
        await_release()
        return count

    return stream_writer


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflow_id")
    arguments.add_argument("count", type=int)
    program = start_program(arguments)
    workflow = define(program)
    configure_messaging(program, executor_id="stream-writer")
    DBOS.launch()
    with SetWorkflowID(program.args.workflow_id):
        program.record_outcome(by="writer", output=workflow(program.args.count))
    DBOS.destroy()


if __name__ == "__main__":
    main()
