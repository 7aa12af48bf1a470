"""The client for processes that do not run workflows: a web API, a script, another service."""

from perdure.client.client import DBOSClient, EnqueueOptions
from perdure.client.handles import ClientWorkflowHandle, ClientWorkflowHandleAsync

__all__ = ["ClientWorkflowHandle", "ClientWorkflowHandleAsync", "DBOSClient", "EnqueueOptions"]
