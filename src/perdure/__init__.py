"""Perdure: durable execution for Python, on SQLite or PostgreSQL.

Decorate functions with ``@DBOS.workflow()`` and ``@DBOS.step()``; every step is checkpointed,
so an interrupted workflow resumes from its last completed step.
"""

from perdure import error
from perdure.client import DBOSClient, EnqueueOptions
from perdure.config import DBOSConfig
from perdure.datasource import AsyncSQLAlchemyDatasource, SQLAlchemyDatasource
from perdure.dbos import DBOS, DBOSConfiguredInstance, run_dbos_database_migrations
from perdure.debouncing import Debouncer, DebouncerClient
from perdure.execution.auth import DBOSContextEnsure, DBOSContextSetAuth
from perdure.execution.context import (
    DuplicationPolicy,
    PropagateOtelContext,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
    SetWorkflowTimeout,
    StepStatus,
    WorkflowIDReusePolicy,
)
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from perdure.execution.steps import StepOptions
from perdure.facade.queues import Queue
from perdure.facade.scheduling import ScheduleInput, WorkflowSchedule
from perdure.facade.workflow_code import StepReservation
from perdure.management import StepInfo
from perdure.management.versions import VersionInfo
from perdure.messaging.outgoing import SendMessage
from perdure.scheduling.definitions import ClientScheduleInput
from perdure.serialization import PayloadCodec, Serializer, WorkflowSerializationFormat
from perdure.storage.records import WorkflowStatusString
from perdure.validation import make_pydantic_args_validator, pydantic_args_validator

__all__ = [
    "DBOS",
    "AsyncSQLAlchemyDatasource",
    "ClientScheduleInput",
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
