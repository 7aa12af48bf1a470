"""``perdure queue ...``: each queue's load and stored settings."""

from __future__ import annotations

from typing import Any

import click

from perdure.cli.tables import format_table
from perdure.cli.target import Target, emit_json, json_option, pass_target
from perdure.management.records import QueueInfo
from perdure.queues.queue import INTERNAL_QUEUE_NAME

# Shown where a setting has no limit.
NO_LIMIT = "-"


@click.group()
def queue() -> None:
    """Queues: depth, running counts and settings."""


@queue.command("list")
@json_option
@pass_target
def queue_list(target: Target) -> None:
    """Every defined queue and every queue with work: waiting, running, and its limits."""
    queues = target.manager().list_queues()
    if target.as_json:
        emit_json([_as_json(q) for q in queues])
        return
    headers = ["QUEUE", "ENQUEUED", "RUNNING", "CONCURRENCY", "PER WORKER", "RATE LIMIT", "NOTES"]
    click.echo(format_table(headers, [_row(q) for q in queues]))


def _row(info: QueueInfo) -> tuple[object, ...]:
    spec = info.definition
    if spec is None:
        note = "internal: resumed and forked workflows" if _is_internal(info) else "not defined"
        return (info.name, info.enqueued, info.running, "", "", "", note)
    limiter = spec.limiter
    rate = NO_LIMIT if limiter is None else f"{limiter['limit']:g} per {limiter['period']:g}s"
    notes = [n for n, on in (("priority", spec.priority_enabled),
                             ("partitioned", spec.partition_queue)) if on]  # fmt: skip
    return (
        info.name,
        info.enqueued,
        info.running,
        _limit(spec.concurrency),
        _limit(spec.worker_concurrency),
        rate,
        ", ".join(notes),
    )


def _limit(value: int | None) -> str:
    return NO_LIMIT if value is None else str(value)


def _is_internal(info: QueueInfo) -> bool:
    return info.name == INTERNAL_QUEUE_NAME


def _as_json(info: QueueInfo) -> dict[str, Any]:
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
        }
    return {
        "queue_name": info.name,
        "enqueued": info.enqueued,
        "running": info.running,
        "internal": _is_internal(info),
        "settings": settings,
    }
