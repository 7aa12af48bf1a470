"""``perdure replay``: replay recorded workflows against the current code, for CI."""

from __future__ import annotations

from pathlib import Path

import click

from perdure.cli.apps import app_option, database_url, import_apps
from perdure.cli.target import Target, emit_json, json_option, pass_target
from perdure.management.filters import STATUSES
from perdure.testing.histories import Selection
from perdure.testing.replay import DEFAULT_TIMEOUT_SEC, read_histories, replay_histories

DEFAULT_LIMIT = 100

# The filters ``replay`` and ``workflow export`` share.
selection_options = [
    click.option("--id", "workflow_ids", multiple=True, help="Only this workflow (repeatable)."),
    click.option("--name", "names", multiple=True, help="Only this function name (repeatable)."),
    click.option(
        "--status",
        "statuses",
        multiple=True,
        type=click.Choice(STATUSES, case_sensitive=False),
        help="Only this status (repeatable).",
    ),
    click.option("--since", help="Only workflows created at or after this ISO 8601 time."),
    click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=DEFAULT_LIMIT,
        show_default=True,
        help="At most this many workflows, the newest first (0: all).",
    ),
]


def with_selection(command: click.decorators.FC) -> click.decorators.FC:
    """Add the filter options (see `selection_of`)."""
    for option in reversed(selection_options):
        command = option(command)
    return command


def selection_of(
    workflow_ids: tuple[str, ...],
    names: tuple[str, ...],
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
) -> Selection:
    """The `Selection` the filter options chose."""
    return Selection(
        workflow_ids=workflow_ids or None,
        names=names or None,
        statuses=tuple(s.upper() for s in statuses) or None,
        since=since,
        limit=limit or None,
    )


@click.command()
@app_option
@click.option(
    "--from",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay the workflows of this export file (perdure workflow export) instead of a "
    "database.",
)
@with_selection
@click.option(
    "--timeout",
    "timeout_sec",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SEC,
    show_default=True,
    help="Seconds one workflow's replay may take.",
)
@json_option
@pass_target
def replay(
    target: Target,
    *,
    apps: tuple[str, ...],
    export_file: Path | None,
    workflow_ids: tuple[str, ...],
    names: tuple[str, ...],
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
    timeout_sec: float,
) -> None:
    """Replay recorded workflows against the current code, and report where it diverges.

    Imports the --app modules (the current code), then re-executes each recorded workflow
    with every step served from its record: no step body runs and nothing is written. A
    finished workflow must ask for exactly its recorded operations; an unfinished one may
    stop where its record ends. Exits 1 if any workflow diverged or could not be replayed:
    run it in CI before deploying changed workflow code.
    """
    import_apps(apps)
    selection = selection_of(workflow_ids, names, statuses, since, limit)
    try:
        if export_file is not None:
            histories = read_histories(selection, export_file=export_file)
        else:
            histories = read_histories(selection, database_url=database_url(target))
    except ValueError as exc:  # a malformed --since
        raise click.BadParameter(str(exc)) from exc
    report = replay_histories(histories, timeout_sec=timeout_sec)
    if target.as_json:
        emit_json(report.to_json())
    else:
        click.echo(report.describe())
    if not report.ok:
        click.get_current_context().exit(1)
