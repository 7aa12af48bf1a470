"""``perdure executor ...``: the launched processes and their heartbeats."""

from __future__ import annotations

import click

from perdure.cli.tables import format_table, iso_time
from perdure.cli.target import Target, emit_json, json_option, pass_target


@click.group()
def executor() -> None:
    """Executors: the processes that ran workflows on this database, and their heartbeats."""


@executor.command("list")
@json_option
@pass_target
def executor_list(target: Target) -> None:
    """Every process recorded by its heartbeats, most recent heartbeat first.

    A process silent for longer than the dead-executor timeout is dead: a live process takes
    over its PENDING workflows and then removes its row.
    """
    records = target.manager().list_executors()
    if target.as_json:
        emit_json(records)
        return
    headers = ["INSTANCE", "EXECUTOR", "HOST", "PID", "VERSION", "STARTED", "LAST HEARTBEAT"]
    rows = [
        (r.instance_id, r.executor_id, r.hostname, r.pid, r.app_version, iso_time(r.started_at),
         iso_time(r.heartbeat_at))
        for r in records
    ]  # fmt: skip
    click.echo(format_table(headers, rows))
