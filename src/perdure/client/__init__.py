"""The client for processes that do not run workflows: a web API, a script, another service."""

from perdure.client.client import DBOSClient
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync
from perdure.client.queues import ClientQueue
from perdure.queues.enqueue_options import EnqueueOptions

__all__ = [
    "ClientQueue",
    "ClientWorkflowHandle",
    "ClientWorkflowHandleAsync",
    "DBOSClient",
    "EnqueueOptions",
]
