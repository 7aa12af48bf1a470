"""Messages and their waits survive a SIGKILL: received once, sent once, timeouts not restarted.

Messages come from another process (the ``send_one`` program) or from a workflow; the judge is
the database: ``notifications`` keeps every message with its ``consumed`` flag, the effects
table counts step-body runs, and ``operation_outputs`` holds the checkpoints.
"""

from __future__ import annotations

import pytest

from tests.crash.harness import (
    Programs,
    Witness,
    consumed_flags,
    recv_blocked_at,
    wait_until,
)
from tests.crash.programs.common import epoch_ms
from tests.crash.programs.forwarder import MESSAGE as FORWARDED
from tests.crash.programs.forwarder import TOPIC as FORWARDED_TOPIC
from tests.crash.programs.receiver import TOPIC

pytestmark = pytest.mark.slow

WORKFLOW_ID = "messaging-wf"
INBOX_ID = "inbox-wf"


def send(programs: Programs, witness: Witness, message: str) -> None:
    """Send ``message`` to the receiver from another process, and wait until it is sent."""
    programs.start("send_one", *witness.argv, WORKFLOW_ID, TOPIC, message).expect_exit(0)


def test_message_received_before_a_kill_is_replayed_not_received_again(
    witness: Witness, programs: Programs
) -> None:
    first = programs.start("receiver", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: witness.step_started_ms(WORKFLOW_ID, "DBOS.sleep"),
        what="the receiver to start waiting in recv",
        watch=[first],
    )
    send(programs, witness, "first")
    wait_until(
        lambda: witness.milestones.count("holding") >= 1,
        what="the receiver to note the message and block",
        watch=[first],
    )
    first.kill()
    assert witness.effects.counts() == {"received:first": 1, "hold": 1}
    assert consumed_flags(witness, WORKFLOW_ID, TOPIC) == [1]

    # A second message waits on the same topic while the receiver is down.
    send(programs, witness, "second")
    programs.start("receiver", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)

    # The replayed recv returned the recorded first message; the second one stays unread.
    assert witness.outcomes() == [{"by": "", "output": ["first"], "error": None}]
    assert consumed_flags(witness, WORKFLOW_ID, TOPIC) == [1, 0]
    assert witness.effects.counts() == {"received:first": 1, "hold": 2}
    assert witness.steps(WORKFLOW_ID) == [
        (1, "DBOS.sleep"),
        (2, "DBOS.recv"),
        (3, "note"),
        (4, "hold"),
    ]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.recovery_attempts) == ("SUCCESS", 2)


def test_message_sent_while_its_blocked_receiver_is_dead_is_received_once(
    witness: Witness, programs: Programs
) -> None:
    first = programs.start("receiver", *witness.argv, "start", WORKFLOW_ID)
    wait_until(
        lambda: recv_blocked_at(witness, WORKFLOW_ID, TOPIC) is not None,
        what="the receiver to block in recv",
        watch=[first],
    )
    first.kill()
    # The registration outlives the process: the send records the message as its recv step.
    send(programs, witness, "first")
    assert consumed_flags(witness, WORKFLOW_ID, TOPIC) == [1]
    assert recv_blocked_at(witness, WORKFLOW_ID, TOPIC) is None
    assert witness.effects.counts() == {}

    programs.start("receiver", *witness.argv, "recover", WORKFLOW_ID).expect_exit(0)
    assert witness.outcomes() == [{"by": "", "output": ["first"], "error": None}]
    assert witness.effects.counts() == {"received:first": 1, "hold": 1}
    assert witness.steps(WORKFLOW_ID) == [
        (1, "DBOS.sleep"),
        (2, "DBOS.recv"),
        (3, "note"),
        (4, "hold"),
    ]


RECV_TIMEOUT_SECONDS = 4.0
# Late enough in the wait that a recovery waiting the whole timeout again would end past the
# upper bound below, even with a fast restart.
KILL_AFTER_MS = 2500
UPPER_BOUND_MS = 6500


def test_recv_timeout_is_durable_across_a_kill(witness: Witness, programs: Programs) -> None:
    timeout = str(RECV_TIMEOUT_SECONDS)
    first = programs.start("recv_timeout", *witness.argv, "start", WORKFLOW_ID, timeout)
    wait_started_ms = wait_until(
        lambda: witness.step_started_ms(WORKFLOW_ID, "DBOS.sleep"),
        what="the recv deadline to be checkpointed",
        watch=[first],
    )
    wait_until(
        lambda: epoch_ms() >= wait_started_ms + KILL_AFTER_MS,
        what=f"{KILL_AFTER_MS} ms into the wait",
        watch=[first],
    )
    first.kill()
    assert witness.effects.counts() == {"start": 1}
    assert witness.steps(WORKFLOW_ID) == [(1, "mark_start"), (2, "DBOS.sleep")]

    programs.start("recv_timeout", *witness.argv, "recover", WORKFLOW_ID, timeout).expect_exit(0)

    [(start_pid, _)] = witness.effects.rows("start")
    [(end_pid, ended_ms)] = witness.effects.rows("end")
    assert start_pid != end_pid, "the end step should run in the restarted process"
    waited_ms = ended_ms - wait_started_ms
    assert RECV_TIMEOUT_SECONDS * 1000 <= waited_ms < UPPER_BOUND_MS, f"waited {waited_ms} ms"
    [outcome] = witness.outcomes()
    assert outcome["output"]["message"] is None
    assert RECV_TIMEOUT_SECONDS * 1000 <= outcome["output"]["waited_ms"] < UPPER_BOUND_MS
    assert witness.steps(WORKFLOW_ID) == [
        (1, "mark_start"),
        (2, "DBOS.sleep"),
        (3, "DBOS.recv"),
        (4, "mark_end"),
    ]
    info = witness.workflows()[WORKFLOW_ID]
    assert (info.status, info.recovery_attempts) == ("SUCCESS", 2)


def test_send_checkpointed_before_a_kill_is_not_sent_again(
    witness: Witness, programs: Programs
) -> None:
    first = programs.start("forwarder", *witness.argv, "start", WORKFLOW_ID, INBOX_ID)
    wait_until(
        lambda: witness.milestones.count("sent") >= 1,
        what="the forwarder to send and block in its next step",
        watch=[first],
    )
    first.kill()
    assert witness.steps(WORKFLOW_ID) == [(1, "prepare"), (2, "DBOS.send")]
    assert len(consumed_flags(witness, INBOX_ID, FORWARDED_TOPIC)) == 1

    programs.start("forwarder", *witness.argv, "recover", WORKFLOW_ID, INBOX_ID).expect_exit(0)

    # One copy of the message, received by the inbox.
    assert consumed_flags(witness, INBOX_ID, FORWARDED_TOPIC) == [1]
    assert witness.outcomes() == [
        {"by": "", "output": FORWARDED, "error": None},  # the forwarder
        {"by": "", "output": FORWARDED, "error": None},  # the inbox
    ]
    assert witness.effects.counts() == {"prepare": 1, "after_send": 2}
    assert witness.steps(WORKFLOW_ID) == [(1, "prepare"), (2, "DBOS.send"), (3, "after_send")]
    assert witness.steps(INBOX_ID) == [(1, "DBOS.sleep"), (2, "DBOS.recv")]
    workflows = witness.workflows()
    assert {workflows[WORKFLOW_ID].status, workflows[INBOX_ID].status} == {"SUCCESS"}
    assert workflows[WORKFLOW_ID].recovery_attempts == 2
