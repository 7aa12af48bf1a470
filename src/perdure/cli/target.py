"""What every command shares: the chosen database, the output format, and JSON printing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click

from perdure.client.connection import open_existing_store
from perdure.config import SYSTEM_DATABASE_URL_ENV
from perdure.management import WorkflowManager
from perdure.management.views import jsonable
from perdure.serialization import JsonSerializer, Payloads

CLI_WAIT_LIMIT_SEC = 10.0


@dataclass
class Target:
    """What the global options chose: the database, and the output format."""

    db_url: str | None
    as_json: bool

    def url(self) -> str:
        """The database URL, or a usage error saying how to give one."""
        if not self.db_url:
            raise click.ClickException(
                f"No database given: pass --db URL or set {SYSTEM_DATABASE_URL_ENV}."
            )
        return self.db_url

    def manager(self) -> WorkflowManager:
        """A manager on the existing database (closed when the command ends)."""
        # A command fails at once if it cannot connect, and waits a little for a database
        # that goes away while it runs.
        store = open_existing_store(
            self.url(), wait_limit_sec=CLI_WAIT_LIMIT_SEC, connect_wait_sec=0.0
        )
        click.get_current_context().call_on_close(store.close)
        # Rows are read in the format recorded with each; undecodable ones are shown as such.
        return WorkflowManager(store, Payloads(JsonSerializer()), lenient=True)


pass_target = click.make_pass_decorator(Target)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    target = ctx.find_object(Target)
    if value and target is not None:
        target.as_json = True


# Lets ``--json`` follow the command too (``perdure workflow list --json``).
json_option = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_json,
    help="Print JSON instead of tables.",
)


def emit_json(value: object) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))
