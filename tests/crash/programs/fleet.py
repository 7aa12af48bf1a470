"""Crash program: one process of a fleet sharing a database, for the fault tests.

Usage: ``python -m tests.crash.programs.fleet URL MILESTONES NAME [options]``.

It registers the workflow ``fleet_job(steps)``: ``steps`` steps, at positions 1 .. ``steps``
(the workflow's operations count from 1), each recording the effect
``<workflow id>:<position>`` (with this process's pid) and sleeping ``--step-ms``; the workflow
returns the sum of the positions. The step at position ``--gate`` records the milestone
``gate`` (detail: workflow ID) and then waits for the flag ``release``, so a test can hold
every workflow inside one step; with
``--gate-in-transaction`` the gate is a ``@DBOS.transaction`` writing a row of ``fleet_ledger``,
open while it waits (on its first attempt only). It launches (records
``ready`` with its pid), starts ``--start COUNT`` workflows ``<NAME>-0`` .. (if asked), waits for
their results and records them as its outcome (``by`` = NAME), then stays up, serving takeovers,
queues and resumes, until the milestone ``stop`` is recorded.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from perdure import DBOS, DBOSConfig, SetWorkflowID
from tests.crash.programs.common import PROGRAM_WAIT_SEC, ProgramContext, parser, start_program

JOB = "fleet_job"
STEP = "fleet_step"
TRANSACTION = "fleet_transaction"
# The rows ``fleet_transaction`` commits, one per run that committed.
LEDGER = "CREATE TABLE IF NOT EXISTS fleet_ledger (workflow_id TEXT NOT NULL, position INTEGER)"


def define(
    program: ProgramContext, *, gate: int | None, step_ms: int, gate_in_transaction: bool
) -> Any:
    """Register the fleet's workflow, its step, and its transaction (the gate, if asked)."""
    effects, milestones = program.effects, program.milestones

    def at_gate(workflow_id: str) -> None:
        milestones.record("gate", workflow_id)
        milestones.wait_for_flag("release", timeout=PROGRAM_WAIT_SEC * 4)

    @DBOS.step(name=STEP)
    def fleet_step(position: int) -> int:
        workflow_id = DBOS.workflow_id or "?"
        effects.record(f"{workflow_id}:{position}")
        if position == gate:
            at_gate(workflow_id)
        if step_ms:
            time.sleep(step_ms / 1000)  # the step's work
        return position

    @DBOS.transaction(name=TRANSACTION)
    def fleet_transaction(position: int) -> int:
        workflow_id = DBOS.workflow_id or "?"
        effects.record(f"{workflow_id}:{position}")
        DBOS.sql_session.execute(
            sa.text("INSERT INTO fleet_ledger (workflow_id, position) VALUES (:w, :p)"),
            {"w": workflow_id, "p": position},
        )
        if not milestones.flag_raised("release"):
            at_gate(workflow_id)  # the first attempt only: its transaction is open meanwhile
        return position

    @DBOS.workflow(name=JOB)
    def fleet_job(steps: int) -> int:
        total = 0
        for position in range(1, steps + 1):  # each step takes the next position
            if position == gate and gate_in_transaction:
                total += fleet_transaction(position)
            else:
                total += fleet_step(position)
        return total

    return fleet_job


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("name")
    arguments.add_argument("--executor-id", default="local")
    arguments.add_argument("--heartbeat", type=float)
    arguments.add_argument("--dead-after", type=float)
    arguments.add_argument("--threads", type=int)
    arguments.add_argument("--start", type=int, default=0)
    arguments.add_argument("--steps", type=int, default=4)
    arguments.add_argument("--gate", type=int)
    arguments.add_argument("--step-ms", type=int, default=0)
    arguments.add_argument("--gate-in-transaction", action="store_true")
    program = start_program(arguments)
    args = program.args
    program.db.execute(LEDGER)
    job = define(
        program,
        gate=args.gate,
        step_ms=args.step_ms,
        gate_in_transaction=args.gate_in_transaction,
    )
    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": args.url,
        "executor_id": args.executor_id,
    }
    if args.heartbeat is not None:
        config["heartbeat_interval_sec"] = args.heartbeat
    if args.dead_after is not None:
        config["dead_executor_timeout_sec"] = args.dead_after
    if args.threads is not None:
        config["max_executor_threads"] = args.threads
    DBOS(config=config)
    DBOS.launch()
    program.milestones.record("ready", args.name)
    if args.start:
        handles = []
        for index in range(args.start):
            with SetWorkflowID(f"{args.name}-{index}"):
                handles.append(DBOS.start_workflow(job, args.steps))
        program.record_outcome(by=args.name, output=[h.get_result() for h in handles])
    program.milestones.wait_for("stop", timeout=PROGRAM_WAIT_SEC * 4)
    DBOS.destroy()


if __name__ == "__main__":
    main()
