"""Crash helper program: send one message to a workflow from plain code, then exit.

Usage: ``python -m tests.crash.programs.send_one URL MILESTONES DESTINATION_ID TOPIC MESSAGE``.
Plays the part of an outside client (`DBOSClient` has no ``send``). It launches as executor
``sender`` so that its launch-time recovery never claims the receiver's workflows.
"""

from __future__ import annotations

from perdure import DBOS
from tests.crash.programs.common import configure_messaging, parser, start_program


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("destination_id")
    arguments.add_argument("topic")
    arguments.add_argument("message")
    program = start_program(arguments)
    configure_messaging(program, executor_id="sender")
    DBOS.launch()
    args = program.args
    DBOS.send(args.destination_id, args.message, topic=args.topic)
    program.milestones.record("sent", args.message)
    DBOS.destroy()


if __name__ == "__main__":
    main()
