"""What crash programs and crash tests share: the database under test, effects and milestones.

- `Database`: plain autocommit SQL on the database under test (SQLite file or PostgreSQL), with
  ``?`` placeholders; Perdure's own tables are named through `Database.system`.
- `Effects`: the application table ``crash_effects``, one row each time a step body runs. Each
  row is its own autocommit insert, so a body that ran and was then killed is still counted.
- `Milestones`: synchronisation points between a test and its programs, in a side SQLite file.
  They live outside the database under test on purpose: a program blocked inside a SQLite
  transaction holds that file's write lock, and a PostgreSQL server being restarted accepts no
  writes, yet both moments must be signalled.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from perdure import DBOS, DBOSConfig
from perdure.storage.postgres.connect import psycopg_conninfo

TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
# Generous: a program waits for a test (or for recovery) on a loaded machine; the test's own
# deadlines are the ones that fail fast.
PROGRAM_WAIT_SEC = 90.0


def poll(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # polling interval of a condition wait, not synchronisation
        delay = min(delay * 2, 0.05)


class Database:
    """The database under test, through one short-lived autocommit connection per statement."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite_path = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else None
        # Perdure's tables: schema ``perdure`` on PostgreSQL, the main schema on SQLite.
        self.system = "" if self._sqlite_path is not None else "perdure."

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) in its own transaction; return its rows."""
        if self._sqlite_path is not None:
            conn = sqlite3.connect(self._sqlite_path, timeout=30.0, isolation_level=None)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        with psycopg.connect(psycopg_conninfo(self.url)) as pg:  # one transaction, committed
            if sql.startswith("CREATE TABLE IF NOT EXISTS"):
                # Two programs starting at once can both pass PostgreSQL's IF NOT EXISTS and
                # one fails on the catalog: creators of a table take turns.
                pg.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (sql,))
            cursor = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]  # built from constants
            return cursor.fetchall() if cursor.description is not None else []


class Effects:
    """The ``crash_effects`` table: one row (name, pid, epoch ms) per run of a step body."""

    CREATE = (
        "CREATE TABLE IF NOT EXISTS crash_effects "
        "(name TEXT NOT NULL, pid INTEGER NOT NULL, at_ms BIGINT NOT NULL)"
    )

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_table(self) -> None:
        self.db.execute(self.CREATE)

    def record(self, name: str) -> None:
        """Record one run of ``name`` (committed at once: a later crash does not undo it)."""
        self.db.execute(
            "INSERT INTO crash_effects (name, pid, at_ms) VALUES (?, ?, ?)",
            (name, os.getpid(), time.time_ns() // 1_000_000),
        )

    def counts(self) -> Counter[str]:
        """How many times each effect was recorded."""
        rows = self.db.execute("SELECT name, COUNT(*) FROM crash_effects GROUP BY name")
        return Counter(dict(rows))

    def by_pid(self) -> dict[str, list[int]]:
        """Every effect's name with the pids that recorded it, in recording order."""
        rows = self.db.execute("SELECT name, pid FROM crash_effects ORDER BY at_ms")
        found: dict[str, list[int]] = {}
        for name, pid in rows:
            found.setdefault(name, []).append(int(pid))
        return found

    def rows(self, name: str) -> list[tuple[int, int]]:
        """The (pid, epoch ms) of each recording of ``name``, oldest first."""
        rows = self.db.execute(
            "SELECT pid, at_ms FROM crash_effects WHERE name = ? ORDER BY at_ms", (name,)
        )
        return [(int(pid), int(at_ms)) for pid, at_ms in rows]


class Milestones:
    """Named events with a detail string, in a side SQLite file shared by a test and programs."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def create_table(self) -> None:
        self._execute("PRAGMA journal_mode=WAL")
        self._execute(
            "CREATE TABLE IF NOT EXISTS milestones "
            "(name TEXT NOT NULL, detail TEXT NOT NULL, pid INTEGER NOT NULL)"
        )

    def record(self, name: str, detail: str = "") -> None:
        self._execute(
            "INSERT INTO milestones (name, detail, pid) VALUES (?, ?, ?)",
            (name, detail, os.getpid()),
        )

    def count(self, name: str) -> int:
        return int(self._execute("SELECT COUNT(*) FROM milestones WHERE name = ?", (name,))[0][0])

    def details(self, name: str) -> list[str]:
        rows = self._execute("SELECT detail FROM milestones WHERE name = ? ORDER BY rowid", (name,))
        return [detail for (detail,) in rows]

    def wait_for(self, name: str, count: int = 1, timeout: float = PROGRAM_WAIT_SEC) -> None:
        """Block until ``name`` was recorded at least ``count`` times."""
        poll(lambda: self.count(name) >= count, timeout=timeout, what=f"milestone {name!r}")

    def raise_flag(self, name: str) -> None:
        """Raise flag ``name``: a file beside the milestones, which waiting never locks.

        A program paused (SIGSTOP) while it polls a SQLite file may hold that file's lock (a
        checkpoint as its connection closes) and block every writer; polling a flag cannot.
        """
        Path(f"{self.path}.{name}").touch()

    def flag_raised(self, name: str) -> bool:
        """Whether flag ``name`` is raised."""
        return Path(f"{self.path}.{name}").exists()

    def wait_for_flag(self, name: str, timeout: float = PROGRAM_WAIT_SEC) -> None:
        """Block until flag ``name`` is raised."""
        flag = Path(f"{self.path}.{name}")
        poll(flag.exists, timeout=timeout, what=f"flag {name!r}")


class ProgramContext:
    """One crash program run: its parsed arguments and its views of the two databases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.db = Database(args.url)
        self.effects = Effects(self.db)
        self.milestones = Milestones(args.milestones)
        self.effects.create_table()
        self.milestones.create_table()

    def configure(self, *, executor_id: str | None = None) -> None:
        """``DBOS(config=...)`` on the database under test (launch is left to the program)."""
        config: DBOSConfig = {"name": "crash-test", "system_database_url": self.args.url}
        if executor_id is not None:
            config["executor_id"] = executor_id
        DBOS(config=config)

    def record_outcome(self, *, by: str = "", output: Any = None, error: str | None = None) -> None:
        """Tell the test what this program's call returned (milestone ``outcome``)."""
        outcome = json.dumps({"by": by, "output": output, "error": error})
        self.milestones.record("outcome", outcome)
        print(outcome, flush=True)

    def finish_recovered(self, workflow_id: str) -> None:
        """Restart run: wait until recovery ends the workflow, then record how it ended."""
        poll(
            lambda: _status(workflow_id) in TERMINAL_STATUSES,
            timeout=PROGRAM_WAIT_SEC,
            what=f"workflow {workflow_id} to end",
        )
        try:
            output = DBOS.retrieve_workflow(workflow_id).get_result()
        except Exception as exc:
            self.record_outcome(error=type(exc).__name__)
        else:
            self.record_outcome(output=output)


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


def parser(description: str | None, *, with_workflow: bool = True) -> argparse.ArgumentParser:
    """Arguments every program takes: the database URL and the milestones file; usually also
    the mode (``start``: first run, ``recover``: restart after a kill) and the workflow ID."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("url", help="system database URL (the database under test)")
    result.add_argument("milestones", help="path of the side SQLite file of milestones")
    if with_workflow:
        result.add_argument("mode", choices=("start", "recover"))
        result.add_argument("workflow_id")
    return result


def start_program(arguments: argparse.ArgumentParser) -> ProgramContext:
    """Parse argv, set up logging to stderr, create the effects and milestones tables."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    return ProgramContext(arguments.parse_args())


def block_forever() -> None:
    """Block this thread until the process is killed (an event nobody ever sets)."""
    threading.Event().wait()


# -- Programs of the messaging tests (events, messages, streams across processes) --------------

# How often a waiter re-checks the database for writes no notification announced. On SQLite
# polling is the only way to see another process's write, so it is frequent; on PostgreSQL
# LISTEN/NOTIFY must wake waiters, so polling is made so rare that a prompt wake-up can only
# come from a notification.
SQLITE_POLLING_INTERVAL_SEC = 0.2
POSTGRES_POLLING_INTERVAL_SEC = 10.0


def configure_messaging(program: ProgramContext, *, executor_id: str | None = None) -> None:
    """`ProgramContext.configure` with the polling interval of the messaging programs.

    A second process on the same database needs its own ``executor_id``: a launch recovers
    every PENDING workflow of its executor that is owned by another launch.
    """
    url = program.args.url
    polling = (
        SQLITE_POLLING_INTERVAL_SEC if url.startswith("sqlite") else POSTGRES_POLLING_INTERVAL_SEC
    )
    config: DBOSConfig = {
        "name": "crash-test",
        "system_database_url": url,
        "notification_listener_polling_interval_sec": polling,
    }
    if executor_id is not None:
        config["executor_id"] = executor_id
    DBOS(config=config)


def epoch_ms() -> int:
    """The wall clock in epoch milliseconds, comparable across processes and with the database."""
    return time.time_ns() // 1_000_000
