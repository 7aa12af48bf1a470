"""Crash program: a live process that takes over the workflow of a process that died.

Usage: ``python -m tests.crash.programs.taker URL MILESTONES WORKFLOW_ID``. It registers the
workflow of `four_steps` (never blocking), launches as executor ``taker`` with fast heartbeats,
records ``taker-ready``, then waits until workflow WORKFLOW_ID (run by another executor) ends
and records its outcome. It never starts the workflow: only a takeover can finish it here.
"""

from __future__ import annotations

from perdure import DBOS, DBOSConfig
from tests.crash.programs.common import parser, start_program
from tests.crash.programs.four_steps import define

HEARTBEAT_SEC = 0.1
DEAD_AFTER_SEC = 1.0


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("workflow_id")
    program = start_program(arguments)
    define(program, block_in_step3=False)
    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": program.args.url,
        "executor_id": "taker",
        "heartbeat_interval_sec": HEARTBEAT_SEC,
        "dead_executor_timeout_sec": DEAD_AFTER_SEC,
    }
    DBOS(config=config)
    DBOS.launch()
    program.milestones.record("taker-ready")
    program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
