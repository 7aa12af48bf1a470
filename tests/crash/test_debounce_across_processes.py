"""Debouncing across processes: a SIGKILLed caller loses no call it made, and callers in
several processes share one window, whose workflow runs once with the last arguments."""

from __future__ import annotations

import json

import pytest

from tests.crash.harness import Programs, Witness, wait_until

pytestmark = pytest.mark.slow

HOUR = "3600"


def called_ids(witness: Witness) -> list[str]:
    """Every workflow ID the callers' debounce calls returned."""
    return [i for detail in witness.milestones.details("called") for i in json.loads(detail)]


def runs(witness: Witness) -> dict[str, int]:
    """How often ``apply`` ran, by argument."""
    counts = witness.effects.counts()
    return {name.removeprefix("ran:"): n for name, n in counts.items() if name.startswith("ran:")}


def serve_until_done(witness: Witness, programs: Programs, count: int, period: str) -> str:
    """Start a serving process making ``count`` calls; wait for ``apply`` to succeed once."""
    server = programs.start("debounce_caller", *witness.argv, "server", "serve", str(count), period)
    wait_until(
        lambda: [w for w in witness.workflows().values() if w.status == "SUCCESS"],
        what="the debounced workflow to succeed",
        timeout=60,
        watch=[server],
    )
    witness.milestones.record("stop")
    server.expect_exit(0)
    [(workflow_id, info)] = witness.workflows().items()
    assert (info.name, info.status, info.executor_id) == ("apply", "SUCCESS", "server")
    return workflow_id


def test_calls_of_a_killed_caller_run_once_with_the_last_arguments(
    witness: Witness, programs: Programs
) -> None:
    caller = programs.start("debounce_caller", *witness.argv, "caller", "call", "3", "0.3")
    wait_until(lambda: witness.milestones.count("called") == 1, what="the calls", watch=[caller])
    caller.kill()
    [workflow_id] = set(called_ids(witness))
    assert runs(witness) == {}  # nobody served the queue

    assert serve_until_done(witness, programs, 0, "0") == workflow_id
    assert runs(witness) == {"caller-2": 1}


def test_callers_in_two_processes_share_one_window(witness: Witness, programs: Programs) -> None:
    callers = [
        programs.start("debounce_caller", *witness.argv, name, "call", "20", HOUR)
        for name in ("left", "right")
    ]
    wait_until(lambda: witness.milestones.count("called") == 2, what="both callers", watch=callers)
    for caller in callers:
        caller.kill()
    [workflow_id] = set(called_ids(witness))  # an hour-long window: every call shares it

    # A third process's call lands in the same window, moves its start to now, and runs it.
    assert serve_until_done(witness, programs, 1, "0.05") == workflow_id
    assert set(called_ids(witness)) == {workflow_id}
    assert runs(witness) == {"server-0": 1}
