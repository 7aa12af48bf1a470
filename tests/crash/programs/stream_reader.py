"""Crash program: reads another process's workflow stream with ``DBOS.read_stream``.

Usage: ``python -m tests.crash.programs.stream_reader URL MILESTONES WORKFLOW_ID``. Runs with the
``stream_writer`` program. Once the writing workflow exists, it reads the stream ``numbers``,
recording the effect ``ack-<value>`` after each value; when the iterator ends it records the
outcome ``reader``: the values in the order read and the writer's status at that moment.
"""

from __future__ import annotations

from typing import Any

from perdure import DBOS
from tests.crash.programs.common import (
    PROGRAM_WAIT_SEC,
    configure_messaging,
    parser,
    poll,
    start_program,
)
from tests.crash.programs.stream_writer import STREAM_KEY


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflow_id")
    program = start_program(arguments)
    configure_messaging(program, executor_id="stream-reader")
    DBOS.launch()
    workflow_id = program.args.workflow_id
    poll(
        lambda: DBOS.get_workflow_status(workflow_id),
        timeout=PROGRAM_WAIT_SEC,
        what=f"workflow {workflow_id} to start",
    )
    values: list[Any] = []
    for value in DBOS.read_stream(workflow_id, STREAM_KEY):
        values.append(value)
        program.effects.record(f"ack-{value}")
    status = DBOS.get_workflow_status(workflow_id)
    writer_status = status.status if status is not None else None
    program.record_outcome(by="reader", output={"values": values, "writer_status": writer_status})
    DBOS.destroy()


if __name__ == "__main__":
    main()
