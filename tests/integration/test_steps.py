"""Steps on both backends: plain calls outside workflows, retries, recorded outputs and errors."""

from __future__ import annotations

import json
import time

import pytest

from perdure import DBOS, SetWorkflowID, StepStatus
from perdure.error import DBOSMaxStepRetriesExceeded, DBOSSerializationError
from tests.integration.system_tables import mark_pending, relaunch, step_rows


class FlakyError(Exception):
    """Raised by steps that fail on purpose (module level: stored errors keep their type)."""


def test_step_outside_a_workflow_is_a_plain_call(dbos: type[DBOS]) -> None:
    seen: list[tuple[str | None, int | None, StepStatus | None]] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3)
    def shout(word: str) -> str:
        seen.append((DBOS.workflow_id, DBOS.step_id, DBOS.step_status))
        return word.upper()

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3)
    def fails() -> None:
        seen.append((DBOS.workflow_id, DBOS.step_id, DBOS.step_status))
        raise FlakyError("no retries outside a workflow")

    assert shout("hi") == "HI"
    # Outside a workflow there is no retry and no wrapping: the error comes straight through.
    with pytest.raises(FlakyError, match="no retries outside"):
        fails()
    assert seen == [(None, None, None), (None, None, None)]


def test_retries_succeed_on_the_third_attempt(dbos: type[DBOS]) -> None:
    attempts: list[tuple[int | None, int | None, int | None, str | None]] = []

    @DBOS.step()
    def first() -> int:
        return 1

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3, backoff_rate=2)
    def flaky() -> str:
        status = DBOS.step_status
        assert status is not None
        attempts.append(
            (DBOS.step_id, status.current_attempt, status.max_attempts, DBOS.workflow_id)
        )
        if len(attempts) < 3:
            raise FlakyError(f"attempt {len(attempts)}")
        return "done"

    @DBOS.workflow()
    def flow() -> tuple[int, str]:
        return first(), flaky()

    started = time.monotonic()
    with SetWorkflowID("retry-ok"):
        assert flow() == (1, "done")
    elapsed = time.monotonic() - started
    # Waits of 0.01 s then 0.02 s between the three attempts.
    assert elapsed >= 0.025
    # As in DBOS, attempts count from 0.
    assert attempts == [(2, 0, 3, "retry-ok"), (2, 1, 3, "retry-ok"), (2, 2, 3, "retry-ok")]
    status = DBOS.retrieve_workflow("retry-ok").get_status()
    assert (status.status, status.output) == ("SUCCESS", (1, "done"))


def test_exhausted_retries_raise_max_step_retries_exceeded(dbos: type[DBOS]) -> None:
    calls: list[int] = []

    @DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3, backoff_rate=2)
    def always_fails() -> None:
        calls.append(1)
        raise FlakyError(f"failure {len(calls)}")

    @DBOS.workflow()
    def flow() -> None:
        always_fails()

    with SetWorkflowID("retry-out"), pytest.raises(DBOSMaxStepRetriesExceeded) as caught:
        flow()
    assert len(calls) == 3
    error = caught.value
    assert isinstance(error.__cause__, FlakyError)
    assert str(error.__cause__) == "failure 3"
    assert error.max_attempts == error.max_retries == 3
    # Each attempt's error, as in DBOS; the last one is also the cause.
    assert [str(e) for e in error.errors] == ["failure 1", "failure 2", "failure 3"]
    assert error.errors[-1] is error.__cause__
    assert error.step_name.endswith("always_fails")
    assert "always_fails" in str(error)

    status = DBOS.retrieve_workflow("retry-out").get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, DBOSMaxStepRetriesExceeded)
    assert (status.error.step_name, status.error.max_attempts) == (error.step_name, 3)
    assert [(type(e), str(e)) for e in status.error.errors] == [
        (FlakyError, f"failure {n}") for n in (1, 2, 3)
    ]
    with pytest.raises(DBOSMaxStepRetriesExceeded, match="always_fails"):
        DBOS.retrieve_workflow("retry-out").get_result()


def test_step_error_without_retries_keeps_its_type(dbos: type[DBOS]) -> None:
    calls: list[int] = []

    @DBOS.step()
    def broken() -> None:
        calls.append(1)
        raise FlakyError("broken once")

    @DBOS.workflow()
    def flow() -> None:
        broken()

    with SetWorkflowID("no-retry"), pytest.raises(FlakyError, match="broken once"):
        flow()
    assert calls == [1]  # no retries by default
    status = DBOS.retrieve_workflow("no-retry").get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, FlakyError)
    assert str(status.error) == "broken once"
    # Read back from the database, the error still has its original type.
    with pytest.raises(FlakyError, match="broken once"):
        DBOS.retrieve_workflow("no-retry").get_result()


def test_step_output_is_recorded_and_not_rerun(dbos: type[DBOS], db_url: str) -> None:
    calls: list[int] = []

    @DBOS.step()
    def compute(x: int) -> dict[str, int]:
        calls.append(x)
        return {"square": x * x}

    @DBOS.workflow()
    def flow(x: int) -> int:
        return compute(x)["square"] + 1

    with SetWorkflowID("recorded"):
        assert flow(7) == 50
    status = DBOS.retrieve_workflow("recorded").get_status()
    assert (status.status, status.output, status.input) == (
        "SUCCESS",
        50,
        {"args": (7,), "kwargs": {}},
    )
    rows = step_rows(db_url, "recorded")
    assert [(r.function_id, r.serialization) for r in rows] == [(1, "json")]
    assert rows[0].function_name.endswith("compute")
    assert json.loads(bytes(rows[0].output)) == {"square": 49}

    # The same workflow ID again returns the recorded result without running anything.
    with SetWorkflowID("recorded"):
        assert flow(7) == 50
    assert calls == [7]


def test_recovered_workflow_replays_recorded_steps(dbos: type[DBOS], db_url: str) -> None:
    step_calls: list[int] = []
    body_runs: list[int] = []

    @DBOS.step()
    def compute(x: int) -> int:
        step_calls.append(x)
        return x * 10

    @DBOS.step()
    def fail_once() -> None:
        raise FlakyError("recorded error")

    @DBOS.workflow()
    def flow(x: int) -> tuple[int, str]:
        body_runs.append(x)
        value = compute(x)
        try:
            fail_once()
        except FlakyError as exc:
            return value, f"{type(exc).__name__}: {exc}"
        return value, "no error"

    with SetWorkflowID("replayed"):
        assert flow(4) == (40, "FlakyError: recorded error")
    mark_pending(db_url, "replayed")
    relaunch(db_url)

    # The body runs again, but the step's recorded output and error are replayed.
    assert DBOS.retrieve_workflow("replayed").get_result() == (40, "FlakyError: recorded error")
    assert body_runs == [4, 4]
    assert step_calls == [4]
    status = DBOS.get_workflow_status("replayed")
    assert status is not None
    assert (status.status, status.recovery_attempts) == ("SUCCESS", 2)


def test_unserializable_step_output_fails_with_a_clear_error(dbos: type[DBOS]) -> None:
    @DBOS.step()
    def opaque() -> object:
        return object()

    @DBOS.workflow()
    def flow() -> None:
        opaque()

    with SetWorkflowID("bad-output"), pytest.raises(DBOSSerializationError) as caught:
        flow()
    message = str(caught.value)
    assert "'object'" in message
    assert "pickle" in message
    assert "bad-output" in message
    status = DBOS.retrieve_workflow("bad-output").get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, DBOSSerializationError)
