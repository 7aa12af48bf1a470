"""Testing durable workflows: a virtual clock, in-process crashes, and pytest fixtures.

- `VirtualClock`: workflow time that a test moves forward (``clock.advance(hours=25)``):
  durable sleeps, timeouts, queue delays and rate limits, schedules and debounce windows
  follow it, and nothing waits for real.
- `crash_at`: a workflow dies at a named step, as if its process had died, and
  ``crash.recover()`` resumes it in-process, so a test can assert exactly-once effects.
- The pytest plugin (`perdure.testing.plugin`, loaded by the ``pytest11`` entry point when
  Perdure is installed): ``perdure_app`` gives each test a freshly launched app on a new
  SQLite file, or on a new PostgreSQL database with ``--perdure-database-url``;
  ``perdure_clock`` installs a `VirtualClock` for the test.
- `replay`: re-execute recorded workflows against the current code, serving every step from
  its record, and report where the code diverges from what was recorded (`ReplayReport`);
  `write_export` / `read_export` keep histories in a file (``perdure workflow export``), and
  `move_to_version` moves an unfinished workflow onto the current version once its replay
  agrees (``perdure workflow move``).

See "Testing durable workflows" in the README.
"""

from __future__ import annotations

from perdure.testing.clock import Timer, VirtualClock
from perdure.testing.crash import Crash, CrashPoint, SimulatedCrash, crash_at

# -- replay checker (issue 14, part 2: perdure.testing.replay) --------------------------------
from perdure.testing.histories import RecordedWorkflow, read_export, write_export
from perdure.testing.replay import ReplayDivergedError, replay
from perdure.testing.upgrades import MoveOutcome, move_to_version
from perdure.testing.verdicts import Divergence, ReplayReport, WorkflowReplay

__all__ = [
    "Crash",
    "CrashPoint",
    "Divergence",
    "MoveOutcome",
    "RecordedWorkflow",
    "ReplayDivergedError",
    "ReplayReport",
    "SimulatedCrash",
    "Timer",
    "VirtualClock",
    "WorkflowReplay",
    "crash_at",
    "move_to_version",
    "read_export",
    "replay",
    "write_export",
]
