"""The client for processes that do not run workflows: a web API, a script, another service."""

from perdure.client.client import DBOSClient, EnqueueOptions
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.client.queues import ClientQueue

__all__ = [
    "ClientQueue",
    "ClientWorkflowHandle",
    "ClientWorkflowHandleAsync",
    "DBOSClient",
    "EnqueueOptions",
]
