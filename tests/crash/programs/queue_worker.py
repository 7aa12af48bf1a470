"""Crash program: a process serving (or only feeding) the queue ``shared``.

Usage: ``python -m tests.crash.programs.queue_worker URL MILESTONES EXECUTOR_ID MODE COUNT
LIMITS``. LIMITS picks the queue's settings: ``concurrency`` (at most 2 running across all
processes) or ``rate`` (at most 4 starts per 0.5 s). MODE:

- ``enqueue``: serve nothing (``listen_queues([])``), enqueue COUNT jobs ``job-0`` ...,
  record ``enqueued`` and exit.
- ``serve``: serve the queue; record ``ready`` and run jobs until the ``stop`` milestone.
- ``hold``: like ``serve``, but each job's first step records ``running`` (detail: this
  executor) and waits for the ``release`` milestone before finishing.

Each job's first step records the effect ``start-<i>``, its last ``end-<i>`` (autocommit
inserts with the time, so overlaps can be measured from the database).
"""

from __future__ import annotations

import time

from perdure import DBOS, DBOSConfig, Queue, SetWorkflowID
from tests.crash.programs.common import ProgramContext, parser, start_program

WORK_SEC = 0.03
QUEUE_SETTINGS: dict[str, dict[str, object]] = {
    "concurrency": {"concurrency": 2},
    "rate": {"limiter": {"limit": 4, "period": 0.5}},
}


def define(program: ProgramContext, *, hold: bool) -> tuple[Queue, object]:
    """The queue and the job workflow (the same in every process)."""
    effects, milestones = program.effects, program.milestones
    executor_id = program.args.executor_id

    @DBOS.step(name="begin")
    def begin(i: int) -> None:
        effects.record(f"start-{i}")
        if hold:
            milestones.record("running", executor_id)
            milestones.wait_for("release")
        time.sleep(WORK_SEC)  # the job's work, during which other jobs would overlap

    @DBOS.step(name="finish")
    def finish(i: int) -> None:
        effects.record(f"end-{i}")

    @DBOS.workflow(name="job")
    def job(i: int) -> int:
        begin(i)
        finish(i)
        return i

    settings = QUEUE_SETTINGS[program.args.limits]
    queue = Queue("shared", polling_interval_sec=0.2, **settings)  # type: ignore[arg-type]
    return queue, job


def main() -> None:
    arguments = parser(__doc__, with_workflow=False)
    arguments.add_argument("executor_id")
    arguments.add_argument("mode", choices=("enqueue", "serve", "hold"))
    arguments.add_argument("count", type=int)
    arguments.add_argument("limits", choices=sorted(QUEUE_SETTINGS))
    program = start_program(arguments)
    args = program.args
    queue, job = define(program, hold=args.mode == "hold")
    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": args.url,
        "executor_id": args.executor_id,
        "notification_listener_polling_interval_sec": 0.2,
    }
    DBOS(config=config)
    if args.mode == "enqueue":
        DBOS.listen_queues([])
    DBOS.launch()
    if args.mode == "enqueue":
        for i in range(args.count):
            with SetWorkflowID(f"job-{i}"):
                queue.enqueue(job, i)  # type: ignore[arg-type]
        program.milestones.record("enqueued")
    else:
        program.milestones.record("ready", args.executor_id)
        program.milestones.wait_for("stop")
    DBOS.destroy()


if __name__ == "__main__":
    main()
