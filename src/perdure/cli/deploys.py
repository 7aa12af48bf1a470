"""``perdure workflow export|stranded|move``: histories for replay, and safe deploys."""

from __future__ import annotations

import json
from pathlib import Path

import click

from perdure.cli.apps import app_option, database_url, import_apps
from perdure.cli.replay import selection_of, with_selection
from perdure.cli.tables import format_table, iso_time
from perdure.cli.target import Target, emit_json, json_option, pass_target
from perdure.management.stranded import DEFAULT_DEAD_AFTER_SEC, StrandedWorkflow, find_stranded
from perdure.storage.store import Store
from perdure.testing.histories import export_document, load_histories, load_history
from perdure.testing.replay import DEFAULT_TIMEOUT_SEC, replay_histories
from perdure.testing.upgrades import move_to_version
from perdure.testing.verdicts import WorkflowReplay

_STRANDED_COLUMNS = ["WORKFLOW ID", "STATUS", "NAME", "VERSION", "CREATED", "REASON"]


@click.command("export")
@with_selection
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True, path_type=Path),
    default=Path("-"),
    help="File to write (default: standard output).",
)
@pass_target
def export_workflows(
    target: Target,
    *,
    workflow_ids: tuple[str, ...],
    names: tuple[str, ...],
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
    output: Path,
) -> None:
    """Write recorded workflows (status, operations, children's outcomes) to a JSON file.

    `perdure replay --from FILE` replays them, e.g. in CI, without access to the database.
    The file holds the workflows' inputs and outputs: keep it as you keep the database.
    """
    store = target.manager().store
    selection = selection_of(workflow_ids, names, statuses, since, limit)
    try:
        histories = load_histories(store, selection)
    except ValueError as exc:  # a malformed --since
        raise click.BadParameter(str(exc)) from exc
    text = json.dumps(export_document(histories), indent=1, sort_keys=True)
    if str(output) == "-":
        click.echo(text)
        return
    output.write_text(text + "\n", encoding="utf-8")
    click.echo(f"Exported {len(histories)} workflow(s) to {output}.", err=True)


@click.command("stranded")
@click.option(
    "--dead-after",
    "dead_after_sec",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_DEAD_AFTER_SEC,
    show_default=True,
    help="A process silent this many seconds is dead (the app's dead_executor_timeout_sec).",
)
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True)
@app_option
@json_option
@pass_target
def stranded_workflows(
    target: Target, *, dead_after_sec: float, limit: int, apps: tuple[str, ...]
) -> None:
    """List PENDING or ENQUEUED workflows that no live process will run, and why.

    With --app, each is also replayed against that code: whether it can take the workflow
    (then `perdure workflow move` puts it on that code's version).
    """
    import_apps(apps, required=False)
    store = target.manager().store
    stranded = find_stranded(store, dead_after_sec=dead_after_sec, limit=limit or None)
    replays = _replays(store, stranded) if apps else {}
    if target.as_json:
        emit_json(
            [
                {**s.to_json(), "replay": replays[s.workflow_id].to_json() if replays else None}
                for s in stranded
            ]
        )
        return
    headers = _STRANDED_COLUMNS + (["CURRENT CODE"] if replays else [])
    rows = []
    for s in stranded:
        row: list[object] = [
            s.workflow_id, s.status, s.name, s.app_version, iso_time(s.created_at), s.reason,
        ]  # fmt: skip
        if replays:
            row.append(_can_take(replays[s.workflow_id]))
        rows.append(row)
    click.echo(format_table(headers, rows))
    if not stranded:
        click.echo("No stranded workflows: every PENDING or ENQUEUED one has a live process.")


def _replays(store: Store, stranded: list[StrandedWorkflow]) -> dict[str, WorkflowReplay]:
    histories = []
    for s in stranded:
        row = store.get_workflow(s.workflow_id)
        if row is not None:  # finished or deleted since: nothing left to tell
            histories.append(load_history(store, row))
    report = replay_histories(histories)
    return {r.workflow_id: r for r in report.results}


def _can_take(result: WorkflowReplay) -> str:
    if result.can_take:
        return f"can take it ({result.operations} operation(s) replayed)"
    if result.divergence is not None:
        return f"diverges {result.divergence.describe()}"
    return f"cannot replay it: {result.failure}"


@click.command("move")
@click.argument("workflow_id")
@app_option
@click.option(
    "--to-version",
    help="Version to move it to (default: the --app module's application_version, else the "
    "latest registered version).",
)
@click.option(
    "--fork", is_flag=True, help="Fork it onto the version instead (the original stays as it is)."
)
@click.option("--force", is_flag=True, help="Move it even if its replay diverges.")
@click.option(
    "--timeout",
    "timeout_sec",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SEC,
    show_default=True,
    help="Seconds its replay may take.",
)
@json_option
@pass_target
def move_workflow(
    target: Target,
    workflow_id: str,
    *,
    apps: tuple[str, ...],
    to_version: str | None,
    fork: bool,
    force: bool,
    timeout_sec: float,
) -> None:
    """Move an unfinished workflow onto the current application version.

    Imports the --app modules (the code of that version) and replays the workflow against
    them first: if the replay diverges the move is refused, unless --force. In place, the
    workflow keeps its ID and the first live process of the version resumes it from its
    recorded steps; with --fork a new workflow on the version carries it on.
    """
    import_apps(apps)
    moved = move_to_version(
        workflow_id, to_version=to_version, database_url=database_url(target), fork=fork,
        force=force, timeout_sec=timeout_sec,
    )  # fmt: skip
    if target.as_json:
        emit_json(
            {
                "workflow_id": moved.workflow_id,
                "from_version": moved.from_version,
                "to_version": moved.to_version,
                "fork_id": moved.fork_id,
                "forced": moved.forced,
                "replay": moved.replay.to_json(),
            }
        )
        return
    checked = (
        f"its replay took the same {moved.replay.operations} operation(s)"
        if not moved.forced
        else f"FORCED: its replay {moved.replay.verdict}"
    )
    if moved.fork_id is not None:
        click.echo(
            f"Forked workflow {workflow_id} onto version {moved.to_version!r} as "
            f"{moved.fork_id} ({checked}); the original is left as it is."
        )
        return
    click.echo(
        f"Moved workflow {workflow_id} from version {moved.from_version!r} to "
        f"{moved.to_version!r} ({checked}); the first live process of that version resumes it."
    )
