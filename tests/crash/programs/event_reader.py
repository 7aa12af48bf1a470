"""Crash program: reads another process's workflow events with ``get_event``/``get_all_events``.

Usage: ``python -m tests.crash.programs.event_reader URL MILESTONES WORKFLOW_ID``. Runs with the
``publisher`` program. It waits for the event ``stage`` and records the outcome
``before-release`` (that value and all events); it then records the milestone
``reader-waiting`` (detail: the epoch ms at which it starts waiting) and waits for the event
``done``; once woken it records the outcome ``after-release``: ``done``, the epoch ms at which
``get_event`` returned, ``stage`` and all events.
"""

from __future__ import annotations

from perdure import DBOS
from tests.crash.programs.common import (
    PROGRAM_WAIT_SEC,
    configure_messaging,
    epoch_ms,
    parser,
    start_program,
)


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflow_id")
    program = start_program(arguments)
    configure_messaging(program, executor_id="event-reader")
    DBOS.launch()
    workflow_id = program.args.workflow_id

    stage = DBOS.get_event(workflow_id, "stage", timeout_seconds=PROGRAM_WAIT_SEC)
    events = DBOS.get_all_events(workflow_id)
    program.record_outcome(by="before-release", output={"stage": stage, "all": events})

    program.milestones.record("reader-waiting", str(epoch_ms()))
    done = DBOS.get_event(workflow_id, "done", timeout_seconds=PROGRAM_WAIT_SEC)
    woken_ms = epoch_ms()
    program.record_outcome(
        by="after-release",
        output={
            "done": done,
            "woken_ms": woken_ms,
            "stage": DBOS.get_event(workflow_id, "stage", timeout_seconds=0),
            "all": DBOS.get_all_events(workflow_id),
        },
    )
    DBOS.destroy()


if __name__ == "__main__":
    main()
