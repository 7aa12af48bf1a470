"""Crash program: debounce the workflow ``apply`` under the key ``k`` on the queue ``debounced``.

Usage: ``python -m tests.crash.programs.debounce_caller URL MILESTONES NAME MODE COUNT PERIOD``.
The process launches as executor NAME and makes COUNT calls, with the arguments ``NAME-0``,
``NAME-1``, ... and the period PERIOD (seconds), then records ``called`` (detail: the JSON list
of the workflow IDs the calls returned). MODE:

- ``call``: do not serve the queue; after the calls, block until killed.
- ``serve``: serve the queue; after the calls (if any) record ``ready`` and run the debounced
  workflow when it starts, until the ``stop`` milestone.

``apply``'s one step records the effect ``ran:<argument>``.
"""

from __future__ import annotations

import json

from perdure import DBOS, DBOSConfig, Debouncer, Queue
from tests.crash.programs.common import block_forever, parser, start_program


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("name")
    arguments.add_argument("mode", choices=("call", "serve"))
    arguments.add_argument("count", type=int)
    arguments.add_argument("period", type=float)
    program = start_program(arguments)
    args = program.args
    effects = program.effects

    @DBOS.step(name="record")
    def record(argument: str) -> None:
        effects.record(f"ran:{argument}")

    @DBOS.workflow(name="apply")
    def apply(argument: str) -> str:
        record(argument)
        return argument

    queue = Queue("debounced", polling_interval_sec=0.2)
    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": args.url,
        "executor_id": args.name,
        "notification_listener_polling_interval_sec": 0.2,
    }
    DBOS(config=config)
    if args.mode == "call":
        DBOS.listen_queues([])
    DBOS.launch()
    debouncer = Debouncer.create(apply, queue=queue)
    ids = [
        debouncer.debounce("k", args.period, f"{args.name}-{i}").workflow_id
        for i in range(args.count)
    ]
    program.milestones.record("called", json.dumps(ids))
    if args.mode == "call":
        block_forever()
    program.milestones.record("ready", args.name)
    program.milestones.wait_for("stop")
    DBOS.destroy()


if __name__ == "__main__":
    main()
