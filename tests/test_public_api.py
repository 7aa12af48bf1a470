"""Pins the public surface: adding or removing a public name must be a deliberate change."""

from __future__ import annotations

import perdure
import perdure._error
import perdure.testing
from perdure import error


def test_top_level_names() -> None:
    assert sorted(perdure.__all__) == [
        "AsyncSQLAlchemyDatasource",
        "ClientScheduleInput",
        "DBOS",
        "DBOSClient",
        "DBOSConfig",
        "DBOSConfiguredInstance",
        "DBOSContextEnsure",
        "DBOSContextSetAuth",
        "Debouncer",
        "DebouncerClient",
        "DuplicationPolicy",
        "EnqueueOptions",
        "PayloadCodec",
        "PropagateOtelContext",
        "Queue",
        "SQLAlchemyDatasource",
        "ScheduleInput",
        "SendMessage",
        "Serializer",
        "SetEnqueueOptions",
        "SetWorkflowAttributes",
        "SetWorkflowID",
        "SetWorkflowTimeout",
        "StepInfo",
        "StepOptions",
        "StepReservation",
        "StepStatus",
        "VersionInfo",
        "WorkflowHandle",
        "WorkflowHandleAsync",
        "WorkflowIDReusePolicy",
        "WorkflowSchedule",
        "WorkflowSerializationFormat",
        "WorkflowStatus",
        "WorkflowStatusString",
        "error",
        "make_pydantic_args_validator",
        "pydantic_args_validator",
        "run_dbos_database_migrations",
    ]
    for name in perdure.__all__:
        assert getattr(perdure, name) is not None


def test_error_module_has_the_spec_names() -> None:
    spec_names = {
        "DBOSException",
        "DBOSInitializationError",
        "DBOSConflictingWorkflowError",
        "DBOSNonExistentWorkflowError",
        "DBOSWorkflowFunctionNotFoundError",
        "DBOSMaxStepRetriesExceeded",
        "DBOSUnexpectedStepError",
        "DBOSWorkflowCancelledError",
        "DBOSAwaitedWorkflowCancelledError",
        "DBOSQueueDeduplicatedError",
        "MaxRecoveryAttemptsExceededError",
        "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
        "DBOSNotAuthorizedError",
        "DBOSWorkflowConflictIDError",
    }
    assert spec_names <= set(dir(error))
    signals = {"DBOSWorkflowCancelledError", "DBOSWorkflowConflictIDError"}
    for name in spec_names - signals:
        assert issubclass(getattr(error, name), error.DBOSException), name
    # A cancellation, or the loss of the workflow to another execution, must not be
    # swallowed by `except Exception` in user code.
    for name in signals:
        assert not issubclass(getattr(error, name), Exception), name
        assert issubclass(getattr(error, name), error.DBOSBaseException), name


def test_error_module_names() -> None:
    # DBOS 3.4's error names (DBOSConflictingRegistrationError is DBOS 2.31's), and Perdure's
    # DBOSSerializationError and DBOSSystemDatabaseError; perdure._error is the same list.
    assert sorted(error.__all__) == [
        "DBOSAwaitedWorkflowCancelledError",
        "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
        "DBOSBaseException",
        "DBOSConflictingRegistrationError",
        "DBOSConflictingWorkflowError",
        "DBOSErrorCode",
        "DBOSException",
        "DBOSInitializationError",
        "DBOSMaxStepRetriesExceeded",
        "DBOSNonExistentWorkflowError",
        "DBOSNotAuthorizedError",
        "DBOSPatchNondeterminismError",
        "DBOSQueryTimeoutError",
        "DBOSQueueDeduplicatedError",
        "DBOSRecoveryError",
        "DBOSSerializationError",
        "DBOSStepNondeterminismError",
        "DBOSStepTimeoutError",
        "DBOSStreamNondeterminismError",
        "DBOSStreamTimeoutError",
        "DBOSSystemDatabaseError",
        "DBOSUnexpectedStepError",
        "DBOSWorkflowCancelledError",
        "DBOSWorkflowConflictIDError",
        "DBOSWorkflowFunctionNotFoundError",
        "DBOSWorkflowIDInUseError",
        "MaxRecoveryAttemptsExceededError",
        "is_workflow_id_in_use_error",
    ]
    assert perdure._error.__all__ == error.__all__


def test_error_codes_are_distinct() -> None:
    codes = [
        cls.dbos_error_code
        for cls in vars(error).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseException)
        and getattr(cls, "dbos_error_code", None) is not None
    ]
    assert len(codes) == len(set(codes))


def test_testing_toolkit_names() -> None:
    assert sorted(perdure.testing.__all__) == [
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
