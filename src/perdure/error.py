"""The whole Perdure exception hierarchy, with DBOS Transact's names, codes and constructors.

Every error a user can act on derives from one root and carries the facts (workflow ID, names,
positions) as attributes; its message says what went wrong and what to do next. ``str(e)`` reads
``"DBOS Error {code}: {message}"`` as in DBOS, and ``e.dbos_error_code`` holds the number of a
`DBOSErrorCode` member (compare it with ``DBOSErrorCode.X.value``)::

    DBOSException                                   root, has ``dbos_error_code``
    ├── DBOSInitializationError                     bad config, unreachable database, not launched
    ├── DBOSConflictingWorkflowError                same ID reused for a different workflow
    ├── DBOSRecoveryError                           a workflow could not be recovered
    ├── DBOSNonExistentWorkflowError                no workflow with that ID
    ├── DBOSWorkflowFunctionNotFoundError           recorded workflow name is not registered
    ├── DBOSWorkflowIDInUseError                    a reuse policy refused a workflow ID in use
    ├── DBOSConflictingRegistrationError            one name registered for two kinds of function
    ├── DBOSMaxStepRetriesExceeded                  a step ran out of attempts
    ├── DBOSStepTimeoutError                        a step ran past its timeout
    ├── DBOSUnexpectedStepError                     replay met a different operation (determinism)
    ├── DBOSStepNondeterminismError                 one position recorded twice (determinism)
    ├── DBOSPatchNondeterminismError                a patch applied inconsistently (determinism)
    ├── DBOSAwaitedWorkflowCancelledError           the awaited workflow was cancelled
    ├── DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
    ├── DBOSQueueDeduplicatedError                  duplicate deduplication ID on a queue
    ├── MaxRecoveryAttemptsExceededError            a workflow crashed too often: dead-lettered
    ├── DBOSNotAuthorizedError                      the caller may not do this (``status_code`` 403)
    ├── DBOSQueryTimeoutError                       a listing query ran past its timeout
    ├── DBOSSerializationError                      a value the serializer cannot store or read
    ├── DBOSSystemDatabaseError                     the system database refused a statement for
    │                                               a reason retrying cannot fix
    ├── DBOSStreamTimeoutError                      no stream value arrived in time
    └── DBOSStreamNondeterminismError               concurrent stream reads in one workflow

    BaseException
    └── DBOSBaseException                           signals raised inside a workflow that user
        │                                           code must not swallow, so not Exceptions
        ├── DBOSWorkflowCancelledError              the workflow was cancelled or timed out
        ├── DBOSWorkflowConflictIDError             another execution owns the workflow now
        └── perdure.testing.SimulatedCrash          a test's crash_at: "the process died here"

Errors are stored as workflow and step outcomes, so each class rebuilds itself from pickle,
``copy`` and the JSON serializer (``__reduce__`` and ``__setstate__``), including rows that
earlier versions of Perdure wrote with older attribute names.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = [
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
    "DBOSSystemDatabaseError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
    "DBOSWorkflowFunctionNotFoundError",
    "DBOSWorkflowIDInUseError",
    "MaxRecoveryAttemptsExceededError",
    "is_workflow_id_in_use_error",
]


class DBOSErrorCode(Enum):
    """The number each error class carries as ``dbos_error_code``: DBOS's numbers, plus Perdure's.

    A plain `Enum`, as in DBOS: an error's ``dbos_error_code`` is the member's ``value``.
    """

    ConflictingIDError = 1
    RecoveryError = 2
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 14
    PatchNondeterminism = 15
    StreamTimeout = 16
    StreamNondeterminism = 17
    StepTimeout = 18
    ConflictingRegistrationError = 25
    QueryTimeout = 26
    WorkflowIDInUse = 27
    StepNondeterminism = 28
    # Perdure's own, numbered far from DBOS's so that a later DBOS code cannot collide.
    Serialization = 100
    SystemDatabase = 101


class _DBOSError(BaseException):
    """What both roots share: a message, a code, DBOS's ``str``, and restoring stored state."""

    dbos_error_code: int | None = None
    status_code: int | None = None  # the HTTP status a web handler should answer with

    def __init__(self, message: str, dbos_error_code: int | None = None) -> None:
        self.message = message
        if dbos_error_code is None:
            dbos_error_code = type(self).dbos_error_code  # each class declares its own code
        self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __str__(self) -> str:
        if self.dbos_error_code:
            return f"DBOS Error {self.dbos_error_code}: {self.message}"
        return f"DBOS Error: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message, self.dbos_error_code), dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        # Pickle, copy and the JSON serializer restore the attributes through here, so a
        # subclass can rename what an earlier version of Perdure stored.
        self.__dict__.update(state or {})


class DBOSException(_DBOSError, Exception):
    """Root of every error Perdure raises.

    Attributes:
        message: The human-readable message.
        dbos_error_code: The ``value`` of a `DBOSErrorCode` member, or None.
        status_code: The HTTP status for a web handler (None: a server error).
    """


class DBOSBaseException(_DBOSError):
    """Root of the signals that stop a workflow's execution from inside it.

    They derive from BaseException so that ``except Exception`` in user code does not swallow
    them; the engine converts them at the workflow's boundary.

    Attributes:
        message: The human-readable message.
        dbos_error_code: The ``value`` of a `DBOSErrorCode` member, or None.
    """


def _legacy_detail(state: dict[str, Any]) -> dict[str, Any]:
    """Rows written before ``detail`` existed kept the caller's message as ``message``."""
    if "detail" not in state and "message" in state:
        state = {**state, "detail": state["message"]}
    return state


class DBOSInitializationError(DBOSException):
    """Configuration is invalid, the database cannot be reached, or Perdure is not set up.

    Attributes:
        detail: The message it was raised with.
    """

    dbos_error_code = DBOSErrorCode.InitializationError.value

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.detail,), dict(vars(self)))


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID that already exists was reused for a different workflow function.

    Attributes:
        workflow_id: The reused ID.
        detail: The message it was raised with, or None.
    """

    dbos_error_code = DBOSErrorCode.ConflictingWorkflowError.value

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.detail = message
        super().__init__(
            message
            or "Workflow already exists with a different function name: workflow ID "
            f"{workflow_id!r} belongs to a different workflow, so it cannot be used for this "
            "one. Use a different workflow ID."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.detail), dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        super().__setstate__(_legacy_detail(state or {}))


class DBOSRecoveryError(DBOSException):
    """A workflow could not be recovered.

    Attributes:
        workflow_id: The workflow.
        detail: The message it was raised with, or None.
    """

    dbos_error_code = DBOSErrorCode.RecoveryError.value

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.detail = message
        super().__init__(
            message
            or f"Workflow {workflow_id!r} could not be recovered. The log says why; it stays "
            "PENDING, so the next recovery tries again."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.detail), dict(vars(self)))


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow with the given ID exists in the system database.

    Takes DBOS 3's ``(destination, destination_id)`` (``destination`` says what the ID was
    for, such as ``"target"``) or DBOS 2's ``(destination_id)``.

    Attributes:
        destination: What the ID was for.
        destination_id: The ID that matches no workflow.
        workflow_id: The same ID.
    """

    dbos_error_code = DBOSErrorCode.NonExistentWorkflowError.value

    def __init__(
        self, destination: str, destination_id: str | None = None, *, message: str | None = None
    ) -> None:
        if destination_id is None:  # DBOS 2's one-argument form
            destination, destination_id = "target", destination
        self.destination = destination
        self.destination_id = destination_id
        self.workflow_id = destination_id
        super().__init__(
            message
            or f"Non-existent {destination} workflow ID: {destination_id}. No workflow with "
            "that ID exists in the system database. Check the ID, and that this process uses "
            "the same system_database_url as the process that started it."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.destination, self.destination_id), dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        state = dict(state or {})
        if "destination_id" not in state and "workflow_id" in state:  # stored by an earlier Perdure
            state["destination_id"] = state["workflow_id"]
            state.setdefault("destination", "target")
        super().__setstate__(state)


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """A workflow recorded in the database names a function this process has not registered.

    Attributes:
        workflow_id: The workflow.
        detail: The message it was raised with, or None.
    """

    dbos_error_code = DBOSErrorCode.WorkflowFunctionNotFound.value

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.detail = message
        super().__init__(
            message
            or f"Workflow {workflow_id!r} cannot run: its function is not registered in this "
            "process. Import the module that defines it before DBOS.launch()."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.detail), dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        super().__setstate__(_legacy_detail(state or {}))


class DBOSWorkflowIDInUseError(DBOSException):
    """A start under the "reject" reuse policy found its workflow ID already in use.

    Attributes:
        workflow_id: The ID.
        workflow_status: The status of the workflow that holds it.
        workflow_name: The name of the workflow that holds it.
    """

    dbos_error_code = DBOSErrorCode.WorkflowIDInUse.value

    def __init__(self, workflow_id: str, workflow_status: str, workflow_name: str) -> None:
        self.workflow_id = workflow_id
        self.workflow_status = workflow_status  # not `status`: it would read as a status code
        self.workflow_name = workflow_name
        super().__init__(
            f"Workflow ID {workflow_id!r} is already in use by workflow {workflow_name!r} "
            f"(status {workflow_status}), and the reuse policy rejects it. Use a different "
            "workflow ID, or DBOS.retrieve_workflow the existing one."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.workflow_id, self.workflow_status, self.workflow_name)
        return (self.__class__, args, dict(vars(self)))


def is_workflow_id_in_use_error(e: BaseException) -> bool:
    """Whether ``e`` is a `DBOSWorkflowIDInUseError`, also one read back without its class."""
    if getattr(e, "dbos_error_code", None) == DBOSErrorCode.WorkflowIDInUse.value:
        return True
    # A stored error whose class could not be loaded comes back as a stand-in naming it.
    original = getattr(e, "original_type", None)
    return isinstance(original, str) and original.endswith(":DBOSWorkflowIDInUseError")


class DBOSConflictingRegistrationError(DBOSException):
    """One name was registered for two different kinds of function (DBOS 2).

    Attributes:
        name: The name.
    """

    dbos_error_code = DBOSErrorCode.ConflictingRegistrationError.value

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"The name {name!r} is already registered for a different kind of function "
            "(workflow, step or transaction). Give one of them another name."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.name,), dict(vars(self)))


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries failed on every attempt; the last error is the ``__cause__``.

    Attributes:
        step_name: The step.
        max_retries: How many attempts it had (also readable as ``max_attempts``).
        errors: The error of each attempt, first to last.
    """

    dbos_error_code = DBOSErrorCode.MaxStepRetriesExceeded.value

    def __init__(self, step_name: str, max_retries: int, errors: list[Exception]) -> None:
        self.step_name = step_name
        self.max_retries = max_retries
        self.errors = errors
        super().__init__(
            f"Step {step_name!r} failed {max_retries} times; giving up. Each attempt's error is "
            "in .errors and the last one is attached as __cause__. Raise max_attempts or fix "
            "the failure to let it succeed."
        )

    @property
    def max_attempts(self) -> int:
        """``max_retries`` under the name of the step option that sets it."""
        return self.max_retries

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.step_name, self.max_retries, self.errors)
        return (self.__class__, args, dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        state = dict(state or {})
        if "max_attempts" in state:  # stored by an earlier Perdure, which kept no errors
            state.setdefault("max_retries", state.pop("max_attempts"))
            state.setdefault("errors", [])
        super().__setstate__(state)


class DBOSStepTimeoutError(DBOSException):
    """A step was cancelled because it ran longer than its timeout.

    Attributes:
        step_name: The step.
        timeout_seconds: Its timeout.
    """

    dbos_error_code = DBOSErrorCode.StepTimeout.value

    def __init__(self, step_name: str, timeout_seconds: float) -> None:
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"Step {step_name!r} was cancelled after running longer than its timeout of "
            f"{timeout_seconds:g} seconds. Give it a longer timeout_seconds, or make it faster."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.step_name, self.timeout_seconds), dict(vars(self)))


class DBOSUnexpectedStepError(DBOSException):
    """On replay, the operation at a position differs from the one recorded (non-determinism).

    Attributes:
        workflow_id: The workflow.
        step_id: The position.
        expected_name: What this run called there.
        recorded_name: What the recorded run called there.
    """

    dbos_error_code = DBOSErrorCode.UnexpectedStep.value

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

    @property
    def inputs(self) -> tuple[str, int, str, str]:
        """The constructor's arguments, as DBOS keeps them."""
        return (self.workflow_id, self.step_id, self.expected_name, self.recorded_name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self.inputs, dict(vars(self)))


class DBOSStepNondeterminismError(DBOSException):
    """One execution recorded the same position twice with different results.

    Attributes:
        workflow_id: The workflow.
        step_id: The position.
    """

    dbos_error_code = DBOSErrorCode.StepNondeterminism.value

    def __init__(self, workflow_id: str, step_id: int) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        super().__init__(
            f"Workflow {workflow_id!r} is not deterministic: one execution recorded position "
            f"{step_id} twice with different results. Start steps in the same order on every "
            "run (do not let concurrent tasks race to take positions)."
        )

    @property
    def inputs(self) -> tuple[str, int]:
        """The constructor's arguments, as DBOS keeps them."""
        return (self.workflow_id, self.step_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self.inputs, dict(vars(self)))


class DBOSPatchNondeterminismError(DBOSException):
    """A patch (``DBOS.patch``) cannot be applied the same way as in the recorded run.

    Attributes:
        workflow_id: The workflow.
        patch_name: The patch.
        details: What differs.
    """

    dbos_error_code = DBOSErrorCode.PatchNondeterminism.value

    def __init__(self, workflow_id: str, patch_name: str, details: str) -> None:
        self.workflow_id = workflow_id
        self.patch_name = patch_name
        self.details = details
        super().__init__(
            f"Workflow {workflow_id!r} cannot apply patch {patch_name!r} deterministically: "
            f"{details}. Workflow code must reach each patch at the same point on every run."
        )

    @property
    def inputs(self) -> tuple[str, str, str]:
        """The constructor's arguments, as DBOS keeps them."""
        return (self.workflow_id, self.patch_name, self.details)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self.inputs, dict(vars(self)))


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The workflow whose result was awaited was cancelled.

    Attributes:
        workflow_id: The awaited workflow.
    """

    dbos_error_code = DBOSErrorCode.AwaitedWorkflowCancelled.value

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"Awaited workflow {workflow_id!r} was cancelled, so it has no result. Resume "
            "it with DBOS.resume_workflow to let it finish."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.message), dict(vars(self)))


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    """The awaited workflow is dead-lettered (MAX_RECOVERY_ATTEMPTS_EXCEEDED).

    Attributes:
        workflow_id: The awaited workflow.
    """

    dbos_error_code = DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded.value

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Awaited workflow {workflow_id!r} exceeded its maximum recovery attempts and is "
            "dead-lettered, so it has no result. Fix the cause, then DBOS.resume_workflow it."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id,), dict(vars(self)))


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with the same deduplication ID is still unfinished on the queue.

    Attributes:
        workflow_id: The workflow that was not enqueued.
        queue_name: The queue.
        deduplication_id: The deduplication ID in use.
        holder_workflow_id: The unfinished workflow that holds it, when known.
    """

    dbos_error_code = DBOSErrorCode.QueueDeduplicated.value
    holder_workflow_id: str | None = None

    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id
        super().__init__(
            f"Workflow {workflow_id} was deduplicated due to an existing workflow in queue "
            f"{queue_name} with deduplication ID {deduplication_id}. It was not enqueued: "
            "retry after that one finishes, or use another deduplication ID."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.workflow_id, self.queue_name, self.deduplication_id)
        return (self.__class__, args, dict(vars(self)))


class MaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow was recovered more than its ``max_recovery_attempts``; it is dead-lettered.

    Attributes:
        workflow_id: The workflow.
        max_retries: Its ``max_recovery_attempts`` (also readable under that name), or None.
    """

    dbos_error_code = DBOSErrorCode.MaxRecoveryAttemptsExceeded.value

    def __init__(self, wf_id: str, max_retries: int | None = None) -> None:
        self.workflow_id = wf_id
        self.max_retries = max_retries
        limit = "its maximum number of" if max_retries is None else str(max_retries)
        super().__init__(
            f"Workflow {wf_id!r} was recovered more than {limit} times without finishing, so "
            "it is now MAX_RECOVERY_ATTEMPTS_EXCEEDED (dead-lettered). Fix the cause of the "
            "crashes, then call DBOS.resume_workflow to run it again."
        )

    @property
    def max_recovery_attempts(self) -> int | None:
        """``max_retries`` under the name of the workflow option that sets it."""
        return self.max_retries

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.max_retries), dict(vars(self)))

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        state = dict(state or {})
        if "max_recovery_attempts" in state:  # stored by an earlier Perdure
            state.setdefault("max_retries", state.pop("max_recovery_attempts"))
        super().__setstate__(state)


class DBOSNotAuthorizedError(DBOSException):
    """The caller is not allowed to perform the operation.

    Attributes:
        msg: The message it was raised with.
    """

    dbos_error_code = DBOSErrorCode.NotAuthorized.value
    status_code = 403

    def __init__(self, msg: str) -> None:
        self.msg = msg
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.msg,), dict(vars(self)))


class DBOSQueryTimeoutError(DBOSException):
    """A query of workflows or steps was cancelled when it ran past its statement timeout.

    Attributes:
        timeout_seconds: The timeout.
    """

    dbos_error_code = DBOSErrorCode.QueryTimeout.value

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"The query was cancelled after running longer than its {timeout_seconds:g}s "
            "statement timeout. Narrow it with filters or a limit, or raise the timeout."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.timeout_seconds,), dict(vars(self)))


class DBOSSerializationError(DBOSException):
    """A value cannot be serialized for storage, or a stored value cannot be read back."""

    dbos_error_code = DBOSErrorCode.Serialization.value

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message,), dict(vars(self)))


class DBOSSystemDatabaseError(DBOSException):
    """The system database refused a statement for a reason that retrying cannot fix.

    Connection failures (a restart, a failover, a partition) are never raised as this: they are
    retried for as long as they last. This is everything else (a full disk, a value too large
    for an index, a closed store), translated from the driver's error at the storage boundary.
    It is never recorded as a workflow's outcome: the workflow stays PENDING and is resumed.

    Attributes:
        sqlstate: The SQLSTATE code PostgreSQL gave (None on SQLite or without one).
    """

    dbos_error_code = DBOSErrorCode.SystemDatabase.value

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message, self.sqlstate), dict(vars(self)))


class DBOSWorkflowCancelledError(DBOSBaseException):
    """Raised inside a workflow that was cancelled or passed its deadline.

    Takes DBOS's ``(msg)``; Perdure also names the workflow with ``workflow_id=``, and without
    a message says what happened to it.

    Attributes:
        workflow_id: The cancelled workflow, or None when raised without one.
    """

    dbos_error_code = DBOSErrorCode.WorkflowCancelled.value

    def __init__(self, msg: str | None = None, *, workflow_id: str | None = None) -> None:
        self.workflow_id = workflow_id
        if msg is None:
            which = "The workflow" if workflow_id is None else f"Workflow {workflow_id!r}"
            msg = (
                f"{which} was cancelled (by cancel_workflow or its timeout); it stopped at its "
                "next step. Resume it with DBOS.resume_workflow if it should finish."
            )
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        # workflow_id is keyword-only: the state (vars) brings it back.
        return (self.__class__, (self.message,), dict(vars(self)))


class DBOSWorkflowConflictIDError(DBOSBaseException):
    """This execution no longer owns its workflow: another execution was given it.

    Raised at the execution's next durable operation after a takeover, a recovery, a resume or
    a requeue elsewhere; the execution records nothing more and stops. The workflow goes on
    (or has finished) in the execution that owns it now.

    Attributes:
        workflow_id: The workflow.
    """

    dbos_error_code = DBOSErrorCode.ConflictingIDError.value

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            message
            or f"Workflow {workflow_id!r} is now owned by another execution (it was taken over, "
            "recovered, resumed or requeued elsewhere), so this execution stopped without "
            "recording anything more: no step runs in two places. Wait for the workflow's "
            "result with DBOS.retrieve_workflow(...).get_result()."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.message), dict(vars(self)))


class DBOSStreamTimeoutError(DBOSException):
    """No value arrived on a stream in time, or the stream ended before the offset asked for.

    Attributes:
        workflow_id: The workflow whose stream was read.
        key: The stream's key.
        timeout_seconds: The wait that passed; None when the stream ended first.
    """

    dbos_error_code = DBOSErrorCode.StreamTimeout.value

    def __init__(self, workflow_id: str, key: str, timeout_seconds: float | None = None) -> None:
        self.workflow_id = workflow_id
        self.key = key
        self.timeout_seconds = timeout_seconds
        if timeout_seconds is None:
            message = (
                f"Stream {key!r} of workflow {workflow_id!r} ended (it was closed, or the "
                "workflow finished) before the value asked for, so none will arrive. Read "
                "from an earlier offset."
            )
        else:
            message = (
                f"No value arrived on stream {key!r} of workflow {workflow_id!r} within "
                f"{timeout_seconds:g} seconds. Wait longer (timeout_seconds), or check that "
                "the workflow is still writing."
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.workflow_id, self.key, self.timeout_seconds)
        return (self.__class__, args, dict(vars(self)))


class DBOSStreamNondeterminismError(DBOSException):
    """Two stream reads waited at once in one workflow (concurrent tasks of an async one).

    Each value a workflow reads is recorded at the workflow's next position; reads waiting
    together would record their values in the order they happen to arrive, which a replay
    cannot reproduce.

    Attributes:
        workflow_id: The reading workflow.
        key: The stream the second read asked for.
    """

    dbos_error_code = DBOSErrorCode.StreamNondeterminism.value

    def __init__(self, workflow_id: str, key: str) -> None:
        self.workflow_id = workflow_id
        self.key = key
        super().__init__(
            f"Workflow {workflow_id!r} started reading stream {key!r} while another stream "
            "read of the same workflow was still waiting: the order in which they record their "
            "values would depend on task scheduling. Read streams one at a time in the "
            "workflow's code, or read them inside a step."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.key), dict(vars(self)))


# Appended with the classes above, which come after the list at the top.
__all__ += ["DBOSStreamNondeterminismError", "DBOSStreamTimeoutError"]
