"""Test side of crash tests: spawn programs in their own process group, wait, SIGKILL, read.

A program is ``python -m tests.crash.programs.NAME <args>`` run from the repository root with
this interpreter; its stdout and stderr go to a log file that failures quote.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tests.crash.programs.common import Database, Effects, Milestones

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_SEC = 30.0


class Program:
    """One running crash program (leader of its own process group)."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"tests.crash.programs.{name}", *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its own process group: the kill takes all of it
            )

    def __str__(self) -> str:
        return f"program {self.name} (pid {self.process.pid})"

    def output(self) -> str:
        """Everything the program printed or logged so far."""
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"{self}, exit code {self.process.poll()}; its output:\n{self.output()}"

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the program's whole process group; it must still be running."""
        assert self.running(), f"{self.describe()}\nexpected it to be running at the kill"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=EXIT_TIMEOUT_SEC)

    def pause(self) -> None:
        """SIGSTOP the program's process group: alive, holding its connections, silent."""
        assert self.running(), f"{self.describe()}\nexpected it to be running at the pause"
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the program's process group after `pause`."""
        os.killpg(self.process.pid, signal.SIGCONT)

    def wait(self, timeout: float = EXIT_TIMEOUT_SEC) -> int:
        """Wait for the program to exit on its own; its exit code (negative: killed by signal)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self} did not exit within {timeout}s\n{self.describe()}"
            ) from None

    def expect_exit(self, code: int = 0, timeout: float = EXIT_TIMEOUT_SEC) -> None:
        """Wait for the program to exit with ``code`` (``-signal.SIGKILL`` for a self-kill)."""
        actual = self.wait(timeout)
        assert actual == code, f"expected exit code {code}, got {actual}: {self.describe()}"


class Programs:
    """Starts programs and kills any still running when the test ends (fixture ``programs``)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._started: list[Program] = []

    def start(self, name: str, *args: str) -> Program:
        log_path = self._log_dir / f"{len(self._started):02d}-{name}.log"
        program = Program(name, args, log_path)
        self._started.append(program)
        return program

    def kill_all(self) -> None:
        """Kill the group of every program not yet exited (only ours, by process group ID)."""
        for program in self._started:
            if program.running():
                os.killpg(program.process.pid, signal.SIGCONT)  # a paused one too
                os.killpg(program.process.pid, signal.SIGKILL)
                program.process.wait(timeout=EXIT_TIMEOUT_SEC)


def wait_until(
    predicate: Callable[[], T],
    *,
    what: str,
    timeout: float = 20.0,
    watch: Sequence[Program] = (),
) -> T:
    """Poll ``predicate`` until truthy; fail early if a watched program exits, or at timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        for program in watch:
            if not program.running():
                value = predicate()  # it may have exited just after making it true
                if value:
                    return value
                raise AssertionError(
                    f"{program} exited while waiting for {what}: {program.describe()}"
                )
        if time.monotonic() > deadline:
            outputs = "\n".join(p.describe() for p in watch)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{outputs}")
        time.sleep(delay)  # polling interval of a condition wait, not synchronisation
        delay = min(delay * 2, 0.05)


@dataclass(frozen=True)
class WorkflowInfo:
    """The columns of ``workflow_status`` that crash tests assert on."""

    status: str
    name: str
    recovery_attempts: int
    executor_id: str
    parent_workflow_id: str | None


@dataclass
class Witness:
    """What a crash test reads to judge a run: the database under test and the milestones."""

    db: Database
    effects: Effects
    milestones: Milestones

    @classmethod
    def create(cls, url: str, folder: Path) -> Witness:
        """Create the effects table and the milestones file before any program starts."""
        db = Database(url)
        witness = cls(db, Effects(db), Milestones(folder / "milestones.sqlite"))
        witness.effects.create_table()
        witness.milestones.create_table()
        return witness

    @property
    def argv(self) -> tuple[str, str]:
        """The first two arguments of every program: the database URL and the milestones file."""
        return self.db.url, self.milestones.path

    def _system_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows from Perdure's tables; none before a program's launch has created them."""
        try:
            return self.db.execute(sql, params)
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "no such table" not in str(exc):
                raise
            return []

    def workflows(self) -> dict[str, WorkflowInfo]:
        """Every row of ``workflow_status``, by workflow ID."""
        rows = self._system_rows(
            "SELECT workflow_id, status, name, recovery_attempts, executor_id, parent_workflow_id "
            f"FROM {self.db.system}workflow_status"
        )
        return {row[0]: WorkflowInfo(*row[1:]) for row in rows}

    def status(self, workflow_id: str) -> str | None:
        info = self.workflows().get(workflow_id)
        return info.status if info is not None else None

    def steps(self, workflow_id: str) -> list[tuple[int, str]]:
        """(position, name) of each checkpointed operation of the workflow, in order."""
        rows = self._system_rows(
            f"SELECT function_id, function_name FROM {self.db.system}operation_outputs "
            "WHERE workflow_id = ? ORDER BY function_id",
            (workflow_id,),
        )
        return [(int(position), name) for position, name in rows]

    def step_started_ms(self, workflow_id: str, name: str) -> int | None:
        """When the checkpointed operation ``name`` of the workflow started (epoch ms)."""
        rows = self._system_rows(
            f"SELECT started_at_epoch_ms FROM {self.db.system}operation_outputs "
            "WHERE workflow_id = ? AND function_name = ?",
            (workflow_id, name),
        )
        return int(rows[0][0]) if rows else None

    def ownership(self, workflow_id: str) -> tuple[int, dict[int, int | None]]:
        """The workflow's current owner token, and the token each recorded step was written
        under, by position."""
        token = self._system_rows(
            f"SELECT owner_token FROM {self.db.system}workflow_status WHERE workflow_id = ?",
            (workflow_id,),
        )
        steps = self._system_rows(
            f"SELECT function_id, owner_token FROM {self.db.system}operation_outputs "
            "WHERE workflow_id = ?",
            (workflow_id,),
        )
        return int(token[0][0]), {int(p): (int(t) if t is not None else None) for p, t in steps}

    def outcomes(self) -> list[dict[str, Any]]:
        """What programs reported through `Program.record_outcome`, in order."""
        return [json.loads(detail) for detail in self.milestones.details("outcome")]


# -- Messaging: what the messaging tests read from Perdure's tables -----------------------------


def consumed_flags(witness: Witness, destination_id: str, topic: str) -> list[int]:
    """The ``consumed`` flag of each message sent to a workflow on ``topic``, oldest first."""
    rows = witness._system_rows(
        f"SELECT consumed FROM {witness.db.system}notifications "
        "WHERE destination_id = ? AND topic = ? ORDER BY seq",
        (destination_id, topic),
    )
    return [int(consumed) for (consumed,) in rows]


def recv_blocked_at(witness: Witness, workflow_id: str, topic: str) -> int | None:
    """The position of the ``recv`` the workflow is registered as blocked in, if any."""
    rows = witness._system_rows(
        f"SELECT function_id FROM {witness.db.system}recv_waiters "
        "WHERE workflow_id = ? AND topic = ?",
        (workflow_id, topic),
    )
    return int(rows[0][0]) if rows else None


def event_updated_ms(witness: Witness, workflow_id: str, key: str) -> int | None:
    """When the workflow last set the event ``key`` (epoch ms), as stored with it."""
    rows = witness._system_rows(
        f"SELECT updated_at_epoch_ms FROM {witness.db.system}workflow_events "
        "WHERE workflow_id = ? AND key = ?",
        (workflow_id, key),
    )
    return int(rows[0][0]) if rows else None
