"""Crash program: a parent workflow with three started children and one called directly.

Usage: ``python -m tests.crash.programs.family URL MILESTONES start|recover WORKFLOW_ID``.
The parent starts ``child(1..3)`` with ``DBOS.start_workflow`` (positions 1-3), calls
``child(4)`` directly (position 4), then awaits the three handles. Each child records a
``child{n}-body`` effect per execution of its body, and one effect per run of each of its three
steps (``-begin``, ``-work``, ``-end``). In ``start`` mode children 2 and 4 block inside their
``work`` step (milestone ``child{n}-blocked``) until killed; child 4 blocks the parent's thread.
"""

from __future__ import annotations

from collections.abc import Callable

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, block_forever, parser, start_program

BLOCKING_CHILDREN = (2, 4)


def define(program: ProgramContext, *, block: bool) -> Callable[[], list[int]]:
    """Register the parent, the child and the child's steps."""
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="child_begin")
    def child_begin(n: int) -> None:
        effects.record(f"child{n}-begin")

    @DBOS.step(name="child_work")
    def child_work(n: int) -> int:
        effects.record(f"child{n}-work")
        if block and n in BLOCKING_CHILDREN:
            milestones.record(f"child{n}-blocked")
            block_forever()
        return n * 10

    @DBOS.step(name="child_end")
    def child_end(n: int) -> None:
        effects.record(f"child{n}-end")

    @DBOS.workflow(name="child")
    def child(n: int) -> int:
        effects.record(f"child{n}-body")  # outside any step: counts executions of the body
        child_begin(n)
        value = child_work(n)
        child_end(n)
        return value

    @DBOS.workflow(name="parent")
    def parent() -> list[int]:
        effects.record("parent-body")
        handles = [DBOS.start_workflow(child, n) for n in (1, 2, 3)]
        direct = child(4)
        return [handle.get_result() for handle in handles] + [direct]

    return parent


def main() -> None:
    program = start_program(parser(__doc__))
    workflow = define(program, block=program.args.mode == "start")
    program.configure()
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            program.record_outcome(output=workflow())  # not reached: killed in child 4
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
