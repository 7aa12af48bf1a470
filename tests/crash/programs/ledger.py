"""Crash program: a transaction that inserts ledger rows, then (first run) blocks before commit.

Usage: ``python -m tests.crash.programs.ledger URL MILESTONES start|recover WORKFLOW_ID``.
The workflow runs ``insert_rows`` (three rows in table ``ledger``, then the milestone
``rows-inserted``; in ``start`` mode it then blocks, uncommitted, until killed) and then
``close_ledger`` (one more row). No effect is recorded inside the transaction: on SQLite the
open transaction holds the write lock, so the body's runs are counted through milestones.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from perdure import DBOS, SetWorkflowID
from tests.crash.programs.common import ProgramContext, block_forever, parser, start_program

ROWS = 3
CREATE_LEDGER = "CREATE TABLE IF NOT EXISTS ledger (entry TEXT NOT NULL)"
INSERT_ENTRY = sa.text("INSERT INTO ledger (entry) VALUES (:entry)")


def define(program: ProgramContext, *, block_before_commit: bool) -> Callable[[int], int]:
    """Register the workflow and its two transactions."""
    milestones = program.milestones

    @DBOS.transaction(name="insert_rows")
    def insert_rows(count: int) -> int:
        for index in range(count):
            DBOS.sql_session.execute(INSERT_ENTRY, {"entry": f"row-{index}"})
        milestones.record("rows-inserted")  # separate connection, separate file
        if block_before_commit:
            block_forever()
        return count

    @DBOS.transaction(name="close_ledger")
    def close_ledger(count: int) -> str:
        entry = f"closed-after-{count}"
        DBOS.sql_session.execute(INSERT_ENTRY, {"entry": entry})
        return entry

    @DBOS.workflow(name="ledger_flow")
    def ledger_flow(count: int) -> int:
        inserted = insert_rows(count)
        close_ledger(inserted)
        return inserted

    return ledger_flow


def main() -> None:
    program = start_program(parser(__doc__))
    program.db.execute(CREATE_LEDGER)
    workflow = define(program, block_before_commit=program.args.mode == "start")
    program.configure()
    DBOS.launch()
    if program.args.mode == "start":
        with SetWorkflowID(program.args.workflow_id):
            program.record_outcome(output=workflow(ROWS))  # not reached: killed before commit
    else:
        program.finish_recovered(program.args.workflow_id)
    DBOS.destroy()


if __name__ == "__main__":
    main()
