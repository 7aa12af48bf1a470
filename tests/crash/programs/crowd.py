"""Crash program: far more waiting workflows than worker threads, and a fan-out past the pool.

Usage: ``python -m tests.crash.programs.crowd URL MILESTONES WAITERS CHILDREN``.

With the default ``max_executor_threads`` (64) and fast heartbeats (a stalled heartbeat would
get this process taken for dead within seconds), it starts WAITERS workflows ``waiter-<i>``:
each runs the step ``first`` (effect ``first:<i>``), waits in ``recv("approve")``, then runs
the step ``after`` (effect ``after:<i>``). Then the workflow ``fanout`` starts CHILDREN child
workflows (each sleeps durably a moment, then records ``child:<i>``) and waits for them all,
while every pool slot may be taken. It records the fan-out's total (milestone ``fanned-out``),
waits for every waiter's result, records the outcome and stays up until ``stop``.
"""

from __future__ import annotations

from typing import Any

from perdure import DBOS, DBOSConfig, SetWorkflowID
from tests.crash.programs.common import PROGRAM_WAIT_SEC, parser, start_program

HEARTBEAT_SEC = 0.5
DEAD_AFTER_SEC = 3.0


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("waiters", type=int)
    arguments.add_argument("children", type=int)
    program = start_program(arguments)
    effects, milestones = program.effects, program.milestones

    @DBOS.step(name="first")
    def first(index: int) -> None:
        effects.record(f"first:{index}")

    @DBOS.step(name="after")
    def after(index: int) -> None:
        effects.record(f"after:{index}")

    @DBOS.workflow(name="waiter")
    def waiter(index: int) -> Any:
        first(index)
        message = DBOS.recv("approve", timeout_seconds=PROGRAM_WAIT_SEC * 2)
        after(index)
        return message

    @DBOS.step(name="child_step")
    def child_step(index: int) -> int:
        effects.record(f"child:{index}")
        return index

    @DBOS.workflow(name="child")
    def child(index: int) -> int:
        DBOS.sleep(0.05)
        return child_step(index)

    @DBOS.workflow(name="fanout")
    def fanout(count: int) -> int:
        handles = [DBOS.start_workflow(child, i) for i in range(count)]
        return sum(h.get_result() for h in handles)

    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": program.args.url,
        "executor_id": "crowd",
        "heartbeat_interval_sec": HEARTBEAT_SEC,
        "dead_executor_timeout_sec": DEAD_AFTER_SEC,
    }
    DBOS(config=config)
    DBOS.launch()
    handles = []
    for index in range(program.args.waiters):
        with SetWorkflowID(f"waiter-{index}"):
            handles.append(DBOS.start_workflow(waiter, index))
    with SetWorkflowID("fanout"):
        total = DBOS.start_workflow(fanout, program.args.children).get_result()
    milestones.record("fanned-out", str(total))
    program.record_outcome(by="crowd", output=[h.get_result() for h in handles])
    milestones.wait_for("stop", timeout=PROGRAM_WAIT_SEC * 4)
    DBOS.destroy()


if __name__ == "__main__":
    main()
