"""Perdure: durable execution for Python, on SQLite or PostgreSQL.

Decorate functions with ``@DBOS.workflow()`` and ``@DBOS.step()``; every step is checkpointed,
so an interrupted workflow resumes from its last completed step.
"""

from perdure import error
from perdure.client import DBOSClient, EnqueueOptions
from perdure.config import DBOSConfig
from perdure.datasource import SQLAlchemyDatasource
from perdure.dbos import DBOS, DBOSConfiguredInstance
from perdure.execution.context import (
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    StepStatus,
)
from perdure.execution.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from perdure.facade.queues import Queue
from perdure.facade.scheduling import WorkflowSchedule
from perdure.management import StepInfo
from perdure.serialization import PayloadCodec, Serializer
from perdure.storage.records import WorkflowStatusString

__all__ = [
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
