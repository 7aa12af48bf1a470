"""The whole Perdure exception hierarchy.

Every error a user can act on derives from one root and carries the facts (workflow ID, names,
positions) as attributes; its message says what went wrong and what to do next::

    DBOSException                                   root, has ``dbos_error_code``
    ├── DBOSInitializationError                     bad config, unreachable database, not launched
    ├── DBOSConflictingWorkflowError                same ID reused for a different workflow
    ├── DBOSNonExistentWorkflowError                no workflow with that ID
    ├── DBOSWorkflowFunctionNotFoundError           recorded workflow name is not registered
    ├── DBOSMaxStepRetriesExceeded                  a step ran out of attempts
    ├── DBOSUnexpectedStepError                     replay met a different operation (determinism)
    ├── DBOSAwaitedWorkflowCancelledError           the awaited workflow was cancelled
    ├── DBOSQueueDeduplicatedError                  duplicate deduplication ID on a queue
    ├── MaxRecoveryAttemptsExceededError            a workflow crashed too often: dead-lettered
    ├── DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
    ├── DBOSNotAuthorizedError
    ├── DBOSSerializationError                      a value the serializer cannot store or read
    └── DBOSSystemDatabaseError                     the system database refused a statement for
                                                    a reason retrying cannot fix

    BaseException
    └── DBOSBaseException                           signals raised inside a workflow that user
        │                                           code must not swallow, so not Exceptions
        ├── DBOSWorkflowCancelledError              the workflow was cancelled or timed out
        └── DBOSWorkflowConflictIDError             another execution owns the workflow now
"""

from __future__ import annotations

from enum import IntEnum


class DBOSErrorCode(IntEnum):
    """Stable numeric codes, one per error class, for programs that match on codes."""

    INITIALIZATION = 1
    CONFLICTING_WORKFLOW = 2
    WORKFLOW_CONFLICT_ID = 3
    NON_EXISTENT_WORKFLOW = 4
    WORKFLOW_FUNCTION_NOT_FOUND = 5
    MAX_STEP_RETRIES_EXCEEDED = 6
    UNEXPECTED_STEP = 7
    WORKFLOW_CANCELLED = 8
    AWAITED_WORKFLOW_CANCELLED = 9
    QUEUE_DEDUPLICATED = 10
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = 11
    AWAITED_WORKFLOW_MAX_RECOVERY_ATTEMPTS_EXCEEDED = 12
    NOT_AUTHORIZED = 13
    SERIALIZATION = 14
    SYSTEM_DATABASE = 15


class DBOSException(Exception):
    """Root of every error Perdure raises.

    Attributes:
        message: The human-readable message.
        dbos_error_code: A stable numeric code (see `DBOSErrorCode`), or None.
    """

    dbos_error_code: int | None = None

    def __init__(self, message: str, *, dbos_error_code: int | None = None) -> None:
        self.message = message
        if dbos_error_code is not None:
            self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle and copy rebuild from the message; subclasses with more facts override.
        return (self.__class__, (self.message,))


class DBOSInitializationError(DBOSException):
    """Configuration is invalid, the database cannot be reached, or Perdure is not set up."""

    dbos_error_code = DBOSErrorCode.INITIALIZATION


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID that already exists was reused for a different workflow function."""

    dbos_error_code = DBOSErrorCode.CONFLICTING_WORKFLOW

    def __init__(self, workflow_id: str, message: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow with the given ID exists in the system database."""

    dbos_error_code = DBOSErrorCode.NON_EXISTENT_WORKFLOW

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"No workflow with ID {workflow_id!r} exists in the system database. "
            "Check the ID, and that this process uses the same system_database_url as the "
            "process that started it."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """A workflow recorded in the database names a function this process has not registered."""

    dbos_error_code = DBOSErrorCode.WORKFLOW_FUNCTION_NOT_FOUND

    def __init__(self, workflow_id: str, message: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries failed on every attempt; the last error is the ``__cause__``."""

    dbos_error_code = DBOSErrorCode.MAX_STEP_RETRIES_EXCEEDED

    def __init__(self, step_name: str, max_attempts: int, message: str | None = None) -> None:
        self.step_name = step_name
        self.max_attempts = max_attempts
        super().__init__(
            message
            or f"Step {step_name!r} failed {max_attempts} times; giving up. The last error is "
            "attached as __cause__. Raise max_attempts or fix the failure to let it succeed."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.step_name, self.max_attempts, self.message))


class DBOSUnexpectedStepError(DBOSException):
    """On replay, the operation at a position differs from the one recorded (non-determinism)."""

    dbos_error_code = DBOSErrorCode.UNEXPECTED_STEP

    def __init__(
        self, workflow_id: str, step_id: int, expected_name: str, recorded_name: str
    ) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.expected_name = expected_name
        self.recorded_name = recorded_name
        super().__init__(
            f"Workflow {workflow_id!r} is not deterministic: at position {step_id} this run "
            f"called {expected_name!r}, but the recorded run called {recorded_name!r}. Workflow "
            "code must call the same steps in the same order on every run; move "
            "non-deterministic logic (time, randomness, I/O) into steps."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            self.__class__,
            (self.workflow_id, self.step_id, self.expected_name, self.recorded_name),
        )


class DBOSBaseException(BaseException):
    """Root of the signals that stop a workflow's execution from inside it.

    They derive from BaseException so that ``except Exception`` in user code does not swallow
    them; the engine converts them at the workflow's boundary.

    Attributes:
        message: The human-readable message.
        dbos_error_code: A stable numeric code (see `DBOSErrorCode`), or None.
    """

    dbos_error_code: int | None = None

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.message,))


class DBOSWorkflowCancelledError(DBOSBaseException):
    """Raised inside a workflow that was cancelled or passed its deadline."""

    dbos_error_code = DBOSErrorCode.WORKFLOW_CANCELLED

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"Workflow {workflow_id!r} was cancelled (by cancel_workflow or its timeout); it "
            "stopped at its next step. Resume it with DBOS.resume_workflow if it should finish."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSWorkflowConflictIDError(DBOSBaseException):
    """This execution no longer owns its workflow: another execution was given it.

    Raised at the execution's next durable operation after a takeover, a recovery, a resume or
    a requeue elsewhere; the execution records nothing more and stops. The workflow goes on
    (or has finished) in the execution that owns it now.
    """

    dbos_error_code = DBOSErrorCode.WORKFLOW_CONFLICT_ID

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"Workflow {workflow_id!r} is now owned by another execution (it was taken over, "
            "recovered, resumed or requeued elsewhere), so this execution stopped without "
            "recording anything more: no step runs in two places. Wait for the workflow's "
            "result with DBOS.retrieve_workflow(...).get_result()."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The workflow whose result was awaited was cancelled."""

    dbos_error_code = DBOSErrorCode.AWAITED_WORKFLOW_CANCELLED

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"Awaited workflow {workflow_id!r} was cancelled, so it has no result. Resume "
            "it with DBOS.resume_workflow to let it finish."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.message))


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with the same deduplication ID is still unfinished on the queue."""

    dbos_error_code = DBOSErrorCode.QUEUE_DEDUPLICATED

    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id
        super().__init__(
            f"Workflow {workflow_id!r} was not enqueued: queue {queue_name!r} already holds an "
            f"unfinished workflow with deduplication ID {deduplication_id!r}. Retry after it "
            "finishes, or use another deduplication ID."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.queue_name, self.deduplication_id))


class MaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow was recovered more than its ``max_recovery_attempts``; it is dead-lettered."""

    dbos_error_code = DBOSErrorCode.MAX_RECOVERY_ATTEMPTS_EXCEEDED

    def __init__(self, workflow_id: str, max_recovery_attempts: int) -> None:
        self.workflow_id = workflow_id
        self.max_recovery_attempts = max_recovery_attempts
        super().__init__(
            f"Workflow {workflow_id!r} was recovered more than {max_recovery_attempts} times "
            "without finishing, so it is now MAX_RECOVERY_ATTEMPTS_EXCEEDED (dead-lettered). "
            "Fix the cause of the crashes, then call DBOS.resume_workflow to run it again."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id, self.max_recovery_attempts))


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    """The awaited workflow is dead-lettered (MAX_RECOVERY_ATTEMPTS_EXCEEDED)."""

    dbos_error_code = DBOSErrorCode.AWAITED_WORKFLOW_MAX_RECOVERY_ATTEMPTS_EXCEEDED

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Awaited workflow {workflow_id!r} exceeded its maximum recovery attempts and is "
            "dead-lettered, so it has no result. Fix the cause, then DBOS.resume_workflow it."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.workflow_id,))


class DBOSNotAuthorizedError(DBOSException):
    """The caller is not allowed to perform the operation."""

    dbos_error_code = DBOSErrorCode.NOT_AUTHORIZED


class DBOSSerializationError(DBOSException):
    """A value cannot be serialized for storage, or a stored value cannot be read back."""

    dbos_error_code = DBOSErrorCode.SERIALIZATION


class DBOSSystemDatabaseError(DBOSException):
    """The system database refused a statement for a reason that retrying cannot fix.

    Connection failures (a restart, a failover, a partition) are never raised as this: they are
    retried for as long as they last. This is everything else (a full disk, a value too large
    for an index, a closed store), translated from the driver's error at the storage boundary.
    It is never recorded as a workflow's outcome: the workflow stays PENDING and is resumed.

    Attributes:
        sqlstate: The SQLSTATE code PostgreSQL gave (None on SQLite or without one).
    """

    dbos_error_code = DBOSErrorCode.SYSTEM_DATABASE

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.message, self.sqlstate))
