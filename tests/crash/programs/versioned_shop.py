"""Crash program: one version of a shop, for the tests of stranded workflows and safe moves.

Usage: ``python -m tests.crash.programs.versioned_shop URL MILESTONES VERSION start|serve``.
``start`` launches as application version VERSION and starts orders ``order-1`` and
``order-2``, whose ``charge`` step records the milestone ``charging`` and blocks until killed;
``serve`` launches as VERSION, records ``serving`` and runs whatever it is given until killed
(its ``charge`` does not block). Each step body records ``STEP:WORKFLOW_ID`` as an effect.

Imported without running (``perdure workflow move --app``), the module only registers the
workflow: the code a move's replay checks.
"""

from __future__ import annotations

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, block_forever, parser, start_program

ORDERS = ("order-1", "order-2")
_program: list[ProgramContext] = []  # set by main(): where effects and milestones go
_blocking: list[bool] = []


def _record(step: str) -> None:
    if _program:
        _program[0].effects.record(f"{step}:{DBOS.workflow_id}")


@DBOS.step(name="reserve")
def reserve(item: str) -> str:
    _record("reserve")
    return f"reserved {item}"


@DBOS.step(name="charge")
def charge(item: str) -> int:
    _record("charge")
    if _blocking:
        _program[0].milestones.record("charging", DBOS.workflow_id or "")
        block_forever()
    return len(item)


@DBOS.step(name="ship")
def ship(item: str) -> str:
    _record("ship")
    return f"shipped {item}"


@DBOS.workflow(name="shop.order")
def order(item: str) -> str:
    reserve(item)
    charge(item)
    return ship(item)


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("version")
    arguments.add_argument("mode", choices=("start", "serve"))
    program = start_program(arguments)
    _program.append(program)
    version, mode = program.args.version, program.args.mode
    DBOS(
        config={
            "name": "crash-test",
            "system_database_url": program.args.url,
            "application_version": version,
            "executor_id": f"shop-{version}",
            "notification_listener_polling_interval_sec": 0.2,
        }
    )
    DBOS.launch()
    if mode == "start":
        _blocking.append(True)
        for workflow_id in ORDERS:
            with SetWorkflowID(workflow_id):
                DBOS.start_workflow(order, workflow_id)
    else:
        program.milestones.record("serving", version)
    block_forever()


if __name__ == "__main__":
    main()
