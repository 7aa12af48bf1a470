"""Throughput of 5,000 3-step workflows started from 8 threads, with the process's CPU time.

Usage: ``python -m benchmarks.probes.throughput [URL | sqlite]`` (default: a recreated
PostgreSQL database, see `benchmarks.probes.common`). The same workload as scenario (b), in
this process, printing workflows/s and the user and system CPU seconds the process used.
"""

from __future__ import annotations

import resource
import sys
import threading
import time

from benchmarks.probes.common import fresh_database
from perdure import DBOS

WORKFLOWS = 5000
CALLERS = 8


def main() -> None:
    url = fresh_database(sys.argv[1] if len(sys.argv) > 1 else None)
    DBOS(config={"name": "probe", "system_database_url": url})

    @DBOS.step()
    def no_op(i: int) -> int:
        return i

    @DBOS.workflow()
    def three_steps(i: int) -> int:
        no_op(i)
        no_op(i)
        return no_op(i)

    DBOS.launch()

    def caller(first: int) -> None:
        handles = [DBOS.start_workflow(three_steps, i) for i in range(first, WORKFLOWS, CALLERS)]
        for handle in handles:
            handle.get_result()

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CALLERS)]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    sys.stdout.write(
        f"{WORKFLOWS / wall:.0f} workflows/s; {wall:.2f} s; process CPU: user {user:.2f} s, "
        f"system {system:.2f} s\n"
    )
    DBOS.destroy()


if __name__ == "__main__":
    main()
