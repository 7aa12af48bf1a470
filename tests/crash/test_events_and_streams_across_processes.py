"""Events and streams written by a workflow in one process are read, as they change, in another.

The writer and the reader are separate programs on the same database, launched as different
executors. Their wake-ups cross processes: LISTEN/NOTIFY on PostgreSQL, polling on SQLite
(the programs poll every 0.2 s on SQLite and only every 10 s on PostgreSQL, see
``configure_messaging``).
"""

from __future__ import annotations

import pytest

from tests.crash.harness import Programs, Witness, event_updated_ms, wait_until
from tests.crash.programs.common import epoch_ms
from tests.crash.programs.stream_writer import STREAM_KEY

pytestmark = pytest.mark.slow

WORKFLOW_ID = "publishing-wf"
# The reader waits this long before the release: a waiter re-checks the database on a back-off
# that starts at a few milliseconds, so a release right away would be seen promptly even
# without notifications. By now the back-off of a PostgreSQL waiter has grown to seconds.
READER_WAITS_MS = 2600
# How soon the waiting reader must see the new event: past SQLite's 0.2 s polling, well short
# of PostgreSQL's 10 s polling (only a notification is that fast there).
WAKE_UP_WITHIN_MS = 1000


def test_events_are_read_by_another_process_as_they_change(
    witness: Witness, programs: Programs
) -> None:
    publisher = programs.start("publisher", *witness.argv, WORKFLOW_ID)
    reader = programs.start("event_reader", *witness.argv, WORKFLOW_ID)
    waiting_since_ms = int(
        wait_until(
            lambda: witness.milestones.details("reader-waiting"),
            what="the reader to read stage 1 and wait for the next event",
            watch=[publisher, reader],
        )[0]
    )
    assert witness.milestones.count("stage-1-set") == 1
    assert witness.outcomes() == [
        {"by": "before-release", "output": {"stage": 1, "all": {"stage": 1}}, "error": None}
    ]

    wait_until(
        lambda: epoch_ms() >= waiting_since_ms + READER_WAITS_MS,
        what=f"the reader to wait {READER_WAITS_MS} ms",
        watch=[publisher, reader],
    )
    witness.milestones.record("release")
    publisher.expect_exit(0)
    reader.expect_exit(0)

    outcomes = {outcome["by"]: outcome for outcome in witness.outcomes()}
    assert outcomes["publisher"]["output"] == "published"
    woken = outcomes["after-release"]["output"]
    assert (woken["done"], woken["stage"]) == (True, 2)
    assert woken["all"] == {"stage": 2, "done": True}
    done_set_ms = event_updated_ms(witness, WORKFLOW_ID, "done")
    assert done_set_ms is not None
    latency_ms = woken["woken_ms"] - done_set_ms
    assert latency_ms < WAKE_UP_WITHIN_MS, f"get_event returned {latency_ms} ms after set_event"
    assert witness.status(WORKFLOW_ID) == "SUCCESS"


STREAM_LENGTH = 20


def test_stream_is_read_by_another_process_while_being_written(
    witness: Witness, programs: Programs
) -> None:
    # Lock-step: the writer writes value n+1 only once the reader has acknowledged value n.
    writer = programs.start("stream_writer", *witness.argv, WORKFLOW_ID, str(STREAM_LENGTH))
    reader = programs.start("stream_reader", *witness.argv, WORKFLOW_ID)
    reader.expect_exit(0)

    # The iterator ended at the close, while the writer was still running.
    [outcome] = witness.outcomes()
    assert outcome == {
        "by": "reader",
        "output": {"values": list(range(STREAM_LENGTH)), "writer_status": "PENDING"},
        "error": None,
    }
    assert witness.milestones.count("stream-closed") == 1
    assert witness.status(WORKFLOW_ID) == "PENDING"
    assert witness.effects.counts() == {f"ack-{n}": 1 for n in range(STREAM_LENGTH)}

    witness.milestones.record("release")
    writer.expect_exit(0)
    assert witness.outcomes()[1] == {"by": "writer", "output": STREAM_LENGTH, "error": None}
    assert witness.status(WORKFLOW_ID) == "SUCCESS"
    assert [name for _, name in witness.steps(WORKFLOW_ID)] == [
        *["DBOS.writeStream", "await_ack"] * STREAM_LENGTH,
        "DBOS.closeStream",
        "await_release",
    ]
    stored = witness.db.execute(
        f'SELECT "offset", closed FROM {witness.db.system}streams '
        'WHERE workflow_id = ? AND key = ? ORDER BY "offset"',
        (WORKFLOW_ID, STREAM_KEY),
    )
    assert stored == [(n, 0) for n in range(STREAM_LENGTH)] + [(STREAM_LENGTH, 1)]
