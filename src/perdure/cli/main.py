"""Entry point of the ``perdure`` command: global options, error handling, top-level commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import psycopg

from perdure.cli.dashboard import dashboard
from perdure.cli.deploys import export_workflows, move_workflow, stranded_workflows
from perdure.cli.executors import executor
from perdure.cli.queues import queue
from perdure.cli.replay import replay
from perdure.cli.target import Target, pass_target
from perdure.cli.workflows import workflow
from perdure.config import SYSTEM_DATABASE_URL_ENV
from perdure.error import DBOSException
from perdure.storage import migrate_system_database, open_store, redact_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    envvar=SYSTEM_DATABASE_URL_ENV,
    metavar="URL",
    help=f"System database URL (default: ${SYSTEM_DATABASE_URL_ENV}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, as_json: bool) -> None:
    """Inspect and steer the workflows of a Perdure system database."""
    ctx.obj = Target(db_url, as_json)


@cli.command()
@click.option(
    "-r",
    "--app-role",
    help="PostgreSQL role the application connects as: given the rights running workflows "
    "needs (reading and writing rows), and no right to alter Perdure's tables.",
)
@pass_target
def migrate(target: Target, app_role: str | None) -> None:
    """Create or upgrade the system database schema (run as the role that owns it)."""
    url = target.url()
    if app_role is not None and url.startswith("sqlite:"):
        raise click.UsageError("--app-role is for PostgreSQL: SQLite has no roles.")
    try:
        migrate_system_database(url, application_role=app_role)
    except psycopg.Error as exc:
        raise click.ClickException(f"Could not grant role {app_role!r} its rights: {exc}") from exc
    click.echo(f"System database {redact_url(url)} is migrated.")
    if app_role is None:
        return
    click.echo(f"Role {app_role!r} may run workflows (it may not alter Perdure's tables).")


@cli.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_target
def reset(target: Target, yes: bool) -> None:
    """Delete every Perdure table (all workflow records) in the system database."""
    url = target.url()
    if not yes:
        click.confirm(
            f"Delete every workflow record in {redact_url(url)}? This cannot be undone",
            abort=True,
        )
    store = open_store(
        url, max_connections=2, create=False, wait_limit_sec=10.0, connect_wait_sec=0.0
    )
    try:
        store.reset()
    finally:
        store.close()
    click.echo(f"System database {redact_url(url)} is reset; run `perdure migrate` to recreate it.")


cli.add_command(dashboard)
cli.add_command(queue)
cli.add_command(executor)
cli.add_command(workflow)
cli.add_command(replay)
workflow.add_command(export_workflows)
workflow.add_command(stranded_workflows)
workflow.add_command(move_workflow)


def _one_line(exc: BaseException) -> str:
    # A Perdure error's message, without the "DBOS Error <code>: " that str() puts before it.
    text = " ".join((exc.message if isinstance(exc, DBOSException) else str(exc)).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; errors print one line on stderr and exit with status 1."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="perdure",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        click.echo("perdure: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"perdure: error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except DBOSException as exc:
        click.echo(f"perdure: error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a driver or OS error: one line, never a traceback
        click.echo(f"perdure: error: {type(exc).__name__}: {_one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
