"""Crash program: a process running the ``@DBOS.scheduled("* * * * * *")`` workflow ``ticker``.

Usage: ``python -m tests.crash.programs.scheduled_ticker URL MILESTONES EXECUTOR_ID``. Records
``ready`` once launched, then runs ticks until the ``stop`` milestone. Each run of a tick's step
records the effect ``tick-<scheduled time>``, so a tick run by two processes shows twice.
"""

from __future__ import annotations

from datetime import datetime

from perdure import DBOS
from tests.crash.programs.common import parser, start_program


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("executor_id")
    program = start_program(arguments)
    effects = program.effects

    @DBOS.step(name="record_tick")
    def record_tick(scheduled_time: datetime) -> None:
        effects.record(f"tick-{scheduled_time.isoformat()}")

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="ticker")
    def ticker(scheduled_time: datetime, actual_time: datetime) -> None:
        record_tick(scheduled_time)

    program.configure(executor_id=program.args.executor_id)
    DBOS.launch()
    program.milestones.record("ready", program.args.executor_id)
    program.milestones.wait_for("stop")
    DBOS.destroy()


if __name__ == "__main__":
    main()
