"""Probe: PostgreSQL restarted every 5-20 s under load; how every workflow ends.

``python -m benchmarks.probes.restarts [--minutes 5] [--workers 8]`` (as a user allowed to
run ``pg_ctlcluster``; it restarts the local cluster, so run it on a machine of your own).

Worker threads keep starting workflows of three steps and one ``@DBOS.transaction`` (on the
system database, the default) while another thread restarts the server at random intervals
of 5 to 20 seconds (``pg_ctlcluster <version> main restart -m fast``: every connection is
cut). At the end it waits for every workflow to finish and prints how many ended in each
status, and any error recorded: a restart must never be anything's outcome.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.probes.common import fresh_database
from perdure import DBOS

RESTART_EVERY_SEC = (5.0, 20.0)


def restart_server(stop: threading.Event, restarts: list[float]) -> None:
    version = next(Path("/etc/postgresql").iterdir()).name
    while not stop.wait(random.uniform(*RESTART_EVERY_SEC)):  # noqa: S311 - not security
        started = time.monotonic()
        subprocess.run(  # noqa: S603 - a fixed command
            ["pg_ctlcluster", version, "main", "restart", "-m", "fast"],  # noqa: S607
            check=True,
            capture_output=True,
        )
        restarts.append(time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    url = fresh_database(None)
    DBOS(config={"name": "restarts-probe", "system_database_url": url})

    @DBOS.step()
    def work(n: int) -> int:
        return n + 1

    @DBOS.transaction()
    def book(n: int) -> int:
        DBOS.sql_session.execute(sa.text("INSERT INTO probe_ledger VALUES (:n)"), {"n": n})
        return n

    @DBOS.workflow()
    def job(n: int) -> int:
        return book(work(work(work(n))))

    DBOS.launch()
    with sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1]).begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe_ledger (n BIGINT)"))
    stop, restarts, handles = threading.Event(), [], []
    lock = threading.Lock()

    raised: collections.Counter[str] = collections.Counter()

    def start_jobs() -> None:
        while not stop.is_set():
            handle = DBOS.start_workflow(job, 1)
            with lock:
                handles.append(handle.workflow_id)
            try:
                handle.get_result()
            except Exception as exc:  # noqa: BLE001 - counted and reported below
                raised[type(exc).__name__] += 1

    restarter = threading.Thread(target=restart_server, args=(stop, restarts))
    workers = [threading.Thread(target=start_jobs) for _ in range(args.workers)]
    for thread in (restarter, *workers):
        thread.start()
    stop.wait(args.minutes * 60)
    stop.set()
    for thread in (restarter, *workers):
        thread.join()
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for workflow_id in handles:
        status = DBOS.get_workflow_status(workflow_id)
        if status is None:
            statuses["missing"] += 1
            continue
        statuses[status.status] += 1
        if status.error is not None:
            errors[repr(status.error)[:120]] += 1
    out = sys.stdout
    out.write(f"{len(handles)} workflows, {len(restarts)} restarts in {args.minutes} min\n")
    out.write(f"statuses: {dict(statuses)}\n")
    out.write(f"errors recorded: {dict(errors) or 'none'}\n")
    out.write(f"errors raised to get_result() callers: {dict(raised) or 'none'}\n")
    DBOS.destroy()


if __name__ == "__main__":
    main()
