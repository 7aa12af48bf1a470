"""Plain-JSON views of management records, shared by the command line and the admin server."""

from __future__ import annotations

import dataclasses
from typing import Any

from perdure.execution.handles import WorkflowStatus
from perdure.management.records import QueueInfo
from perdure.queues.queue import INTERNAL_QUEUE_NAME


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; what JSON cannot hold becomes its ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, BaseException):
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            "message": str(value),
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


def workflow_summary(status: WorkflowStatus) -> dict[str, Any]:
    """A workflow's status without its payloads (input, output, error)."""
    fields = vars(status).copy()
    for payload in ("input", "output", "error"):
        fields.pop(payload)
    return jsonable(fields)  # type: ignore[no-any-return]


def is_internal(info: QueueInfo) -> bool:
    """Whether this is the internal queue (resumed and forked workflows from clients)."""
    return info.name == INTERNAL_QUEUE_NAME


def queue_view(info: QueueInfo) -> dict[str, Any]:
    """A queue's load and, if a process defined it, its settings."""
    spec = info.definition
    settings: dict[str, Any] | None = None
    if spec is not None:
        settings = {
            "concurrency": spec.concurrency,
            "worker_concurrency": spec.worker_concurrency,
            "limiter": spec.limiter,
            "priority_enabled": spec.priority_enabled,
            "partition_queue": spec.partition_queue,
            "polling_interval_sec": spec.polling_interval_sec,
            "partition_concurrency": spec.partition_concurrency,
            "partition_worker_concurrency": spec.partition_worker_concurrency,
            "partition_limiter": spec.partition_limiter,
        }
    return {
        "queue_name": info.name,
        "enqueued": info.enqueued,
        "running": info.running,
        "internal": is_internal(info),
        "settings": jsonable(settings),
    }
