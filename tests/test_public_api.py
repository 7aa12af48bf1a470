"""Pins the public surface: adding or removing a public name must be a deliberate change."""

from __future__ import annotations

import perdure
from perdure import error


def test_top_level_names() -> None:
    assert sorted(perdure.__all__) == [
        "DBOS",
        "DBOSClient",
        "DBOSConfig",
        "DBOSConfiguredInstance",
        "EnqueueOptions",
        "PayloadCodec",
        "Queue",
        "SQLAlchemyDatasource",
        "Serializer",
        "SetEnqueueOptions",
        "SetWorkflowID",
        "SetWorkflowTimeout",
        "StepInfo",
        "StepStatus",
        "WorkflowHandle",
        "WorkflowHandleAsync",
        "WorkflowSchedule",
        "WorkflowStatus",
        "WorkflowStatusString",
        "error",
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


def test_error_codes_are_distinct() -> None:
    codes = [
        cls.dbos_error_code
        for cls in vars(error).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseException)
        and getattr(cls, "dbos_error_code", None) is not None
    ]
    assert len(codes) == len(set(codes))
