"""``perdure workflow ...``: list, inspect, cancel, resume and fork workflows."""

from __future__ import annotations

import click

from perdure.cli.tables import format_fields, format_table, iso_time
from perdure.cli.target import Target, emit_json, json_option, pass_target
from perdure.error import DBOSNonExistentWorkflowError
from perdure.execution.handles import WorkflowStatus
from perdure.management.filters import STATUSES
from perdure.management.records import StepInfo
from perdure.management.views import workflow_summary
from perdure.queues.queue import INTERNAL_QUEUE_NAME

_LIST_COLUMNS = ["WORKFLOW ID", "STATUS", "NAME", "CREATED", "UPDATED", "QUEUE", "EXECUTOR"]
_STEP_COLUMNS = ["ID", "NAME", "OUTCOME", "CHILD WORKFLOW", "STARTED", "MS"]


@click.group()
def workflow() -> None:
    """Workflows: list, get, steps, cancel, resume, fork, export, stranded, move."""


@workflow.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES, case_sensitive=False),
    help="Only this status (repeatable).",
)
@click.option("--name", help="Only workflows of this function name.")
@click.option("--prefix", help="Only workflow IDs starting with this.")
@click.option("--queue", help="Only workflows of this queue.")
@click.option("--app-version", help="Only this application version.")
@click.option("--user", help="Only workflows of this authenticated user.")
@click.option("--start", help="Created at or after this ISO 8601 time.")
@click.option("--end", help="Created at or before this ISO 8601 time.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--sort-desc/--asc", default=True, help="Newest first (default) or oldest first.")
@json_option
@pass_target
def list_workflows(
    target: Target,
    *,
    statuses: tuple[str, ...],
    name: str | None,
    prefix: str | None,
    queue: str | None,
    app_version: str | None,
    user: str | None,
    start: str | None,
    end: str | None,
    limit: int,
    offset: int,
    sort_desc: bool,
) -> None:
    """List workflows, newest first (payloads are not read: see `workflow get`)."""
    try:
        found = target.manager().list_workflows(
            status=[s.upper() for s in statuses] or None,
            name=name,
            workflow_id_prefix=prefix,
            queue_name=queue,
            app_version=app_version,
            user=user,
            start_time=start,
            end_time=end,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            load_input=False,
            load_output=False,
        )
    except ValueError as exc:  # a malformed --start / --end
        raise click.BadParameter(str(exc)) from exc
    if target.as_json:
        emit_json([workflow_summary(s) for s in found])
        return
    rows = [
        (
            s.workflow_id,
            s.status,
            s.name,
            iso_time(s.created_at),
            iso_time(s.updated_at),
            s.queue_name,
            s.executor_id,
        )
        for s in found
    ]
    click.echo(format_table(_LIST_COLUMNS, rows))


@workflow.command("get")
@click.argument("workflow_id")
@json_option
@pass_target
def get_workflow(target: Target, workflow_id: str) -> None:
    """Show everything recorded about one workflow, including its input and outcome."""
    status = target.manager().get_workflow_status(workflow_id)
    if status is None:
        raise DBOSNonExistentWorkflowError("target", workflow_id)
    if target.as_json:
        emit_json(status)
        return
    shown: list[tuple[str, object]] = list(vars(status).items())
    times = {"created_at": status.created_at, "updated_at": status.updated_at}
    click.echo(format_fields([(k, iso_time(times[k]) if k in times else v) for k, v in shown]))


@workflow.command("steps")
@click.argument("workflow_id")
@json_option
@pass_target
def workflow_steps(target: Target, workflow_id: str) -> None:
    """List the recorded steps of a workflow, by position."""
    manager = target.manager()
    if manager.get_workflow_status(workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target", workflow_id)
    steps = manager.list_workflow_steps(workflow_id)
    if target.as_json:
        emit_json(steps)
        return
    click.echo(format_table(_STEP_COLUMNS, [_step_row(s) for s in steps]))


def _step_row(step: StepInfo) -> tuple[object, ...]:
    outcome = step["error"] if step["error"] is not None else step["output"]
    began, ended = step["started_at_epoch_ms"], step["completed_at_epoch_ms"]
    elapsed = ended - began if began is not None and ended is not None else None
    started = iso_time(began) if began is not None else None
    name, child = step["function_name"], step["child_workflow_id"]
    return (step["function_id"], name, outcome, child, started, elapsed)


@workflow.command("cancel")
@click.argument("workflow_id")
@json_option
@pass_target
def cancel_workflow(target: Target, workflow_id: str) -> None:
    """Cancel a workflow and its unfinished children."""
    manager = target.manager()
    if manager.get_workflow_status(workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target", workflow_id)
    manager.cancel_workflows([workflow_id], cancel_children=True)
    _report(target, manager.get_workflow_status(workflow_id), "Cancel requested for")


@workflow.command("resume")
@click.argument("workflow_id")
@json_option
@pass_target
def resume_workflow(target: Target, workflow_id: str) -> None:
    """Resume a cancelled or dead-lettered workflow (a launched process picks it up)."""
    manager = target.manager()
    manager.resume_workflow(workflow_id)
    _report(target, manager.get_workflow_status(workflow_id), "Resumed")


@workflow.command("fork")
@click.argument("workflow_id")
@click.option(
    "--step",
    "start_step",
    type=click.IntRange(min=0),
    required=True,
    help="First step position to re-execute (earlier steps keep their recorded outcomes).",
)
@click.option("--app-version", help="Application version of the fork (default: the source's).")
@click.option("--id", "new_id", help="ID of the fork (default: a new UUID).")
@json_option
@pass_target
def fork_workflow(
    target: Target,
    workflow_id: str,
    *,
    start_step: int,
    app_version: str | None,
    new_id: str | None,
) -> None:
    """Start a copy of a workflow that re-executes its steps from --step on."""
    manager = target.manager()
    forked = manager.fork_workflow(
        workflow_id, start_step, application_version=app_version, new_workflow_id=new_id
    )
    _report(target, manager.get_workflow_status(forked), f"Forked {workflow_id} as")


def _report(target: Target, status: WorkflowStatus | None, action: str) -> None:
    if status is None:  # deleted meanwhile
        return
    if target.as_json:
        emit_json(workflow_summary(status))
        return
    line = f"{action} workflow {status.workflow_id}: now {status.status}"
    if status.status == "ENQUEUED" and status.queue_name == INTERNAL_QUEUE_NAME:
        line += "; the first launched process free to run it picks it up"
    click.echo(line)
