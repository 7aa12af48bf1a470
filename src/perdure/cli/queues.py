"""``perdure queue ...``: each queue's load and stored settings."""

from __future__ import annotations

import click

from perdure.cli.tables import format_table
from perdure.cli.target import Target, emit_json, json_option, pass_target
from perdure.management.records import QueueInfo
from perdure.management.views import is_internal, queue_view

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
        emit_json([queue_view(q) for q in queues])
        return
    headers = ["QUEUE", "ENQUEUED", "RUNNING", "CONCURRENCY", "PER WORKER", "RATE LIMIT", "NOTES"]
    click.echo(format_table(headers, [_row(q) for q in queues]))


def _row(info: QueueInfo) -> tuple[object, ...]:
    spec = info.definition
    if spec is None:
        note = "internal: resumed and forked workflows" if is_internal(info) else "not defined"
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
