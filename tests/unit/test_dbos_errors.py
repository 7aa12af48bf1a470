"""The error classes match DBOS Transact 3.4's: names, codes, bases, constructors, attributes,
``str``; each survives pickle, copy and the JSON serializer, also as rows older Perdure wrote."""

from __future__ import annotations

import copy
import inspect
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest

import perdure._error
from perdure import error
from perdure.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSBaseException,
    DBOSConflictingRegistrationError,
    DBOSConflictingWorkflowError,
    DBOSErrorCode,
    DBOSException,
    DBOSInitializationError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSPatchNondeterminismError,
    DBOSQueryTimeoutError,
    DBOSQueueDeduplicatedError,
    DBOSRecoveryError,
    DBOSSerializationError,
    DBOSStepNondeterminismError,
    DBOSStepTimeoutError,
    DBOSSystemDatabaseError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
    DBOSWorkflowFunctionNotFoundError,
    DBOSWorkflowIDInUseError,
    MaxRecoveryAttemptsExceededError,
    is_workflow_id_in_use_error,
)
from perdure.serialization import JsonSerializer, Payloads, PickleSerializer, UnserializableError

JSON = JsonSerializer()


class StepFailedError(Exception):
    """An attempt's error (module level, so the JSON serializer finds its class again)."""


def _via_pickle(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))  # noqa: S301 - bytes this test just made


DBOS_CODES = {
    "ConflictingIDError": 1,
    "RecoveryError": 2,
    "InitializationError": 3,
    "WorkflowFunctionNotFound": 4,
    "NonExistentWorkflowError": 5,
    "MaxRecoveryAttemptsExceeded": 6,
    "MaxStepRetriesExceeded": 7,
    "NotAuthorized": 8,
    "ConflictingWorkflowError": 9,
    "WorkflowCancelled": 10,
    "UnexpectedStep": 11,
    "QueueDeduplicated": 12,
    "AwaitedWorkflowCancelled": 13,
    "AwaitedWorkflowMaxRecoveryAttemptsExceeded": 14,
    "PatchNondeterminism": 15,
    "StreamTimeout": 16,
    "StreamNondeterminism": 17,
    "StepTimeout": 18,
    "ConflictingRegistrationError": 25,  # DBOS 2.31
    "QueryTimeout": 26,
    "WorkflowIDInUse": 27,
    "StepNondeterminism": 28,
}


def test_error_codes_have_dbos_names_and_numbers() -> None:
    codes = {member.name: member.value for member in DBOSErrorCode}
    assert {name: codes[name] for name in DBOS_CODES} == DBOS_CODES
    # Perdure's own codes keep clear of DBOS's numbers.
    assert {name: codes[name] for name in codes.keys() - DBOS_CODES.keys()} == {
        "Serialization": 100,
        "SystemDatabase": 101,
    }
    assert not issubclass(DBOSErrorCode, int)  # a plain Enum, as in DBOS: compare `.value`


# (the error, its base, its code, attributes it must have)
CASES: list[tuple[BaseException, type[BaseException], DBOSErrorCode, dict[str, Any]]] = [
    (
        DBOSInitializationError("bad config"),
        DBOSException,
        DBOSErrorCode.InitializationError,
        {"detail": "bad config", "message": "bad config"},
    ),
    (
        DBOSConflictingWorkflowError("wf", "used twice"),
        DBOSException,
        DBOSErrorCode.ConflictingWorkflowError,
        {"workflow_id": "wf", "detail": "used twice"},
    ),
    (
        DBOSRecoveryError("wf"),
        DBOSException,
        DBOSErrorCode.RecoveryError,
        {"workflow_id": "wf", "detail": None},
    ),
    (
        DBOSNonExistentWorkflowError("target", "wf"),
        DBOSException,
        DBOSErrorCode.NonExistentWorkflowError,
        {"destination": "target", "destination_id": "wf", "workflow_id": "wf"},
    ),
    (
        DBOSWorkflowFunctionNotFoundError("wf"),
        DBOSException,
        DBOSErrorCode.WorkflowFunctionNotFound,
        {"workflow_id": "wf", "detail": None},
    ),
    (
        DBOSWorkflowIDInUseError("wf", "PENDING", "flow"),
        DBOSException,
        DBOSErrorCode.WorkflowIDInUse,
        {"workflow_id": "wf", "workflow_status": "PENDING", "workflow_name": "flow"},
    ),
    (
        DBOSConflictingRegistrationError("flow"),
        DBOSException,
        DBOSErrorCode.ConflictingRegistrationError,
        {"name": "flow"},
    ),
    (
        DBOSMaxStepRetriesExceeded("step", 3, [StepFailedError("1"), StepFailedError("2")]),
        DBOSException,
        DBOSErrorCode.MaxStepRetriesExceeded,
        {"step_name": "step", "max_retries": 3, "max_attempts": 3},
    ),
    (
        DBOSStepTimeoutError("step", 1.5),
        DBOSException,
        DBOSErrorCode.StepTimeout,
        {"step_name": "step", "timeout_seconds": 1.5},
    ),
    (
        DBOSUnexpectedStepError("wf", 2, "a", "b"),
        DBOSException,
        DBOSErrorCode.UnexpectedStep,
        {"workflow_id": "wf", "step_id": 2, "expected_name": "a", "recorded_name": "b"},
    ),
    (
        DBOSStepNondeterminismError("wf", 2),
        DBOSException,
        DBOSErrorCode.StepNondeterminism,
        {"workflow_id": "wf", "step_id": 2, "inputs": ("wf", 2)},
    ),
    (
        DBOSPatchNondeterminismError("wf", "v2", "recorded without it"),
        DBOSException,
        DBOSErrorCode.PatchNondeterminism,
        {"inputs": ("wf", "v2", "recorded without it"), "patch_name": "v2"},
    ),
    (
        DBOSAwaitedWorkflowCancelledError("wf"),
        DBOSException,
        DBOSErrorCode.AwaitedWorkflowCancelled,
        {"workflow_id": "wf"},
    ),
    (
        DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded("wf"),
        DBOSException,
        DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded,
        {"workflow_id": "wf"},
    ),
    (
        DBOSQueueDeduplicatedError("wf", "q", "d"),
        DBOSException,
        DBOSErrorCode.QueueDeduplicated,
        {"workflow_id": "wf", "queue_name": "q", "deduplication_id": "d"},
    ),
    (
        MaxRecoveryAttemptsExceededError("wf", 5),
        DBOSException,
        DBOSErrorCode.MaxRecoveryAttemptsExceeded,
        {"workflow_id": "wf", "max_retries": 5, "max_recovery_attempts": 5},
    ),
    (
        DBOSNotAuthorizedError("no"),
        DBOSException,
        DBOSErrorCode.NotAuthorized,
        {"msg": "no", "message": "no", "status_code": 403},
    ),
    (
        DBOSQueryTimeoutError(2.0),
        DBOSException,
        DBOSErrorCode.QueryTimeout,
        {"timeout_seconds": 2.0},
    ),
    (
        DBOSSerializationError("cannot store"),
        DBOSException,
        DBOSErrorCode.Serialization,
        {"message": "cannot store"},
    ),
    (
        DBOSSystemDatabaseError("disk full", "53100"),
        DBOSException,
        DBOSErrorCode.SystemDatabase,
        {"message": "disk full", "sqlstate": "53100"},
    ),
    (
        DBOSWorkflowCancelledError(workflow_id="wf"),
        DBOSBaseException,
        DBOSErrorCode.WorkflowCancelled,
        {"workflow_id": "wf"},
    ),
    (
        DBOSWorkflowConflictIDError("wf"),
        DBOSBaseException,
        DBOSErrorCode.ConflictingIDError,
        {"workflow_id": "wf"},
    ),
]
IDS = [type(case[0]).__name__ for case in CASES]


def test_every_error_class_has_a_case() -> None:
    classes = {
        cls
        for cls in vars(error).values()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == error.__name__
    }
    roots = {DBOSException, DBOSBaseException}
    # The stream errors are checked with the streams.
    streams = {cls for cls in classes if cls.__name__.startswith("DBOSStream")}
    untested = classes - roots - streams - {type(case[0]) for case in CASES}
    assert {cls.__name__ for cls in untested} <= {"_DBOSError"}


@pytest.mark.parametrize(("exc", "base", "code", "attrs"), CASES, ids=IDS)
def test_base_code_str_and_attributes(
    exc: BaseException, base: type[BaseException], code: DBOSErrorCode, attrs: dict[str, Any]
) -> None:
    assert isinstance(exc, base)
    # The signals must get past `except Exception` in user code; the rest are Exceptions.
    assert isinstance(exc, Exception) is (base is DBOSException)
    assert exc.dbos_error_code == code.value  # type: ignore[attr-defined]
    assert type(exc).dbos_error_code == code.value  # type: ignore[attr-defined]
    assert str(exc) == f"DBOS Error {code.value}: {exc.message}"  # type: ignore[attr-defined]
    assert exc.args == (exc.message,)  # type: ignore[attr-defined]
    for name, value in attrs.items():
        assert getattr(exc, name) == value, name


@pytest.mark.parametrize(
    "rebuild", [_via_pickle, copy.copy, copy.deepcopy], ids=["pickle", "copy", "deepcopy"]
)
@pytest.mark.parametrize(("exc", "base", "code", "attrs"), CASES, ids=IDS)
def test_pickle_and_copy_round_trip(
    rebuild: Callable[[Any], Any],
    exc: BaseException,
    base: type[BaseException],
    code: DBOSErrorCode,
    attrs: dict[str, Any],
) -> None:
    back = rebuild(exc)
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    assert _comparable(vars(back)) == _comparable(vars(exc))
    for name, value in attrs.items():
        assert getattr(back, name) == value, name


@pytest.mark.parametrize(
    ("exc", "base", "code", "attrs"),
    [case for case in CASES if case[1] is DBOSException],
    ids=[name for name, case in zip(IDS, CASES, strict=True) if case[1] is DBOSException],
)
def test_json_serializer_round_trip(
    exc: BaseException, base: type[BaseException], code: DBOSErrorCode, attrs: dict[str, Any]
) -> None:
    back = JSON.loads(JSON.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    assert _comparable(vars(back)) == _comparable(vars(exc))


def test_perdure_signals_never_come_back_from_a_row() -> None:
    # A stored cancellation raised again by a replay would stop the reader's own workflow.
    for signal in (DBOSWorkflowCancelledError(workflow_id="wf"), DBOSWorkflowConflictIDError("w")):
        assert isinstance(JSON.loads(JSON.dumps(signal)), UnserializableError)


def _comparable(attrs: dict[str, Any]) -> dict[str, Any]:
    """Exceptions compare by identity; compare the errors of `errors` by type and text."""
    if "errors" in attrs:
        return {**attrs, "errors": [(type(e), str(e)) for e in attrs["errors"]]}
    return attrs


def test_root_constructors_and_str_as_in_dbos() -> None:
    plain = DBOSException("went wrong")
    assert (plain.message, plain.dbos_error_code, plain.status_code) == ("went wrong", None, None)
    assert str(plain) == "DBOS Error: went wrong"
    coded = DBOSException("went wrong", DBOSErrorCode.QueueDeduplicated.value)
    assert coded.dbos_error_code == DBOSErrorCode.QueueDeduplicated.value == 12
    assert str(coded) == "DBOS Error 12: went wrong"
    assert str(DBOSException("m", dbos_error_code=5)) == "DBOS Error 5: m"
    signal = DBOSBaseException("stop", 10)
    assert not isinstance(signal, Exception)
    assert str(signal) == "DBOS Error 10: stop"
    assert str(DBOSBaseException("stop")) == "DBOS Error: stop"
    assert _via_pickle(coded).dbos_error_code == 12


def test_non_existent_workflow_takes_dbos_3_and_dbos_2_forms() -> None:
    three = DBOSNonExistentWorkflowError("`send` destination", "wf")
    assert (three.destination, three.destination_id, three.workflow_id) == (
        "`send` destination",
        "wf",
        "wf",
    )
    assert "Non-existent `send` destination workflow ID: wf." in str(three)
    two = DBOSNonExistentWorkflowError("wf")
    assert (two.destination, two.destination_id, two.workflow_id) == ("target", "wf", "wf")
    told = DBOSNonExistentWorkflowError("target", "wf", message="Start it first.")
    assert told.message == "Start it first."
    assert _via_pickle(told).message == "Start it first."


def test_workflow_cancelled_takes_a_message_or_a_workflow_id() -> None:
    dbos_form = DBOSWorkflowCancelledError("Workflow wf is cancelled. Aborting function.")
    assert dbos_form.message == "Workflow wf is cancelled. Aborting function."
    assert dbos_form.workflow_id is None
    perdure_form = DBOSWorkflowCancelledError(workflow_id="wf")
    assert "'wf' was cancelled" in perdure_form.message
    assert "resume_workflow" in perdure_form.message  # says what to do
    both = DBOSWorkflowCancelledError("passed its deadline", workflow_id="wf")
    assert (both.message, both.workflow_id) == ("passed its deadline", "wf")
    assert _via_pickle(both).workflow_id == "wf"


def test_max_step_retries_keeps_each_attempts_error() -> None:
    errors: list[Exception] = [StepFailedError("first"), StepFailedError("second")]
    exc = DBOSMaxStepRetriesExceeded("step", 2, errors)
    assert exc.errors == errors
    assert (exc.max_retries, exc.max_attempts) == (2, 2)
    back = JSON.loads(JSON.dumps(exc))
    assert [(type(e), str(e)) for e in back.errors] == [
        (StepFailedError, "first"),
        (StepFailedError, "second"),
    ]


class TwoArgError(Exception):
    """Pickles, but cannot unpickle: its __init__ does not take its own args back."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


def test_pickle_config_keeps_the_type_when_an_attempts_error_does_not_unpickle() -> None:
    payloads = Payloads(PickleSerializer())
    exc = DBOSMaxStepRetriesExceeded("step", 2, [TwoArgError(1, "x"), TwoArgError(2, "y")])
    back = payloads.decode_error(payloads.encode_error(exc, workflow_id="wf"), "pickle")
    assert type(back) is DBOSMaxStepRetriesExceeded
    assert str(back) == str(exc)
    assert [(type(e), str(e), e.code) for e in back.errors] == [
        (TwoArgError, "1: x", 1),
        (TwoArgError, "2: y", 2),
    ]


def test_optional_constructor_arguments() -> None:
    assert MaxRecoveryAttemptsExceededError("wf").max_retries is None
    assert "its maximum number of" in MaxRecoveryAttemptsExceededError("wf").message
    assert DBOSConflictingWorkflowError("wf").detail is None
    assert "'wf'" in DBOSConflictingWorkflowError("wf").message
    assert DBOSWorkflowFunctionNotFoundError("wf", "why").detail == "why"
    assert DBOSRecoveryError("wf", "why").detail == "why"


def test_is_workflow_id_in_use_error() -> None:
    assert is_workflow_id_in_use_error(DBOSWorkflowIDInUseError("wf", "PENDING", "flow"))
    # Read back where the class could not be loaded: the stand-in names it.
    stand_in = UnserializableError("gone", "perdure.error:DBOSWorkflowIDInUseError")
    assert is_workflow_id_in_use_error(stand_in)
    assert not is_workflow_id_in_use_error(UnserializableError("x", "app:OtherError"))
    assert not is_workflow_id_in_use_error(DBOSQueueDeduplicatedError("wf", "q", "d"))
    assert not is_workflow_id_in_use_error(ValueError("x"))


def test_private_module_path_re_exports_the_public_names() -> None:
    from perdure._error import DBOSException as FromPrivate  # noqa: PLC0415 - DBOS's spelling

    assert FromPrivate is DBOSException
    assert perdure._error.__all__ == error.__all__
    for name in error.__all__:
        assert getattr(perdure._error, name) is getattr(error, name), name
    public = {
        name
        for name, value in vars(error).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == error.__name__
        and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public == set(error.__all__)


# Rows written by Perdure before it took DBOS's constructors: the JSON serializer recorded
# each error's args (its message alone) and its public attributes, under their old names.
def _legacy_row(cls: type[BaseException], message: str, **attrs: Any) -> bytes:
    return json.dumps(
        {
            "$t": "exc",
            "c": f"perdure.error:{cls.__name__}",
            "m": message,
            "a": [message],
            "d": {**attrs, "message": message},
        }
    ).encode()


LEGACY_ROWS: list[tuple[bytes, type[DBOSException], dict[str, Any]]] = [
    (
        _legacy_row(
            DBOSMaxStepRetriesExceeded, "Step failed 3 times.", step_name="s", max_attempts=3
        ),
        DBOSMaxStepRetriesExceeded,
        {"step_name": "s", "max_retries": 3, "max_attempts": 3, "errors": []},
    ),
    (
        _legacy_row(DBOSNonExistentWorkflowError, "No workflow 'wf'.", workflow_id="wf"),
        DBOSNonExistentWorkflowError,
        {"workflow_id": "wf", "destination_id": "wf", "destination": "target"},
    ),
    (
        _legacy_row(
            MaxRecoveryAttemptsExceededError,
            "Recovered more than 2 times.",
            workflow_id="wf",
            max_recovery_attempts=2,
        ),
        MaxRecoveryAttemptsExceededError,
        {"workflow_id": "wf", "max_retries": 2, "max_recovery_attempts": 2},
    ),
    (
        _legacy_row(DBOSConflictingWorkflowError, "ID 'wf' belongs to 'a'.", workflow_id="wf"),
        DBOSConflictingWorkflowError,
        {"workflow_id": "wf", "detail": "ID 'wf' belongs to 'a'."},
    ),
    (
        _legacy_row(DBOSWorkflowFunctionNotFoundError, "'wf' needs class C.", workflow_id="wf"),
        DBOSWorkflowFunctionNotFoundError,
        {"workflow_id": "wf", "detail": "'wf' needs class C."},
    ),
    (
        _legacy_row(DBOSAwaitedWorkflowCancelledError, "'wf' was cancelled.", workflow_id="wf"),
        DBOSAwaitedWorkflowCancelledError,
        {"workflow_id": "wf"},
    ),
    (
        _legacy_row(DBOSNotAuthorizedError, "Not allowed."),
        DBOSNotAuthorizedError,
        {"msg": "Not allowed."},
    ),
]


@pytest.mark.parametrize(
    ("row", "cls", "attrs"), LEGACY_ROWS, ids=[case[1].__name__ for case in LEGACY_ROWS]
)
def test_errors_stored_by_earlier_perdure_still_read(
    row: bytes, cls: type[DBOSException], attrs: dict[str, Any]
) -> None:
    old = JSON.loads(row)
    assert type(old) is cls
    stored_message = json.loads(row)["m"]
    assert old.message == stored_message
    assert old.dbos_error_code == cls.dbos_error_code
    assert str(old) == f"DBOS Error {cls.dbos_error_code}: {stored_message}"
    for name, value in attrs.items():
        assert getattr(old, name) == value, name
    # And from now on it round-trips in the new shape.
    again = _via_pickle(old)
    assert (type(again), str(again)) == (cls, str(old))
    assert vars(old).items() <= vars(again).items()
    assert JSON.loads(JSON.dumps(old)).message == stored_message
