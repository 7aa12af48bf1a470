"""``perdure dashboard``: the admin API and web dashboard over a system database."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TextIO

import click
from click.core import ParameterSource

from perdure.admin import AdminServer
from perdure.cli.target import Target, pass_target
from perdure.config import parse_admin_server
from perdure.error import DBOSInitializationError
from perdure.storage import redact_url

TOKEN_ENV = "PERDURE_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a token


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=3001,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--token-file",
    type=click.File("r"),
    help="A file holding the bearer token every API call must send (required unless --host "
    "is a loopback address). Or set $PERDURE_ADMIN_TOKEN.",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help=f"The token itself. Prefer ${TOKEN_ENV} or --token-file: a command line is visible "
    "to every user of the machine (ps) and kept in shell history.",
)
@pass_target
def dashboard(
    target: Target, host: str, port: int, token_file: TextIO | None, token: str | None
) -> None:
    """Serve the web dashboard and the admin API until interrupted (Ctrl-C).

    Cancel, resume and fork act on the database: a resumed or forked workflow runs in the
    first launched process free to take it. Bound beyond loopback, put it behind a proxy
    that terminates TLS: the token travels in every request.
    """
    url = target.url()
    source = click.get_current_context().get_parameter_source("token")
    if source is ParameterSource.COMMANDLINE:
        click.echo(
            f"Warning: --token on the command line is visible to other users (ps) and kept "
            f"in shell history; set ${TOKEN_ENV} or use --token-file instead.",
            err=True,
        )
    if token_file is not None:
        if token is not None:
            raise click.UsageError(f"Give the token once: --token-file, or --token / ${TOKEN_ENV}.")
        token = token_file.read().strip()
    try:
        settings = parse_admin_server({"host": host, "port": port, "token": token})
    except DBOSInitializationError as exc:
        raise click.BadParameter(exc.message) from exc
    assert settings is not None  # noqa: S101 - enabled by default
    identity = {
        "application": redact_url(url),
        "executor_id": "perdure dashboard",
        "application_version": "",
    }
    server = AdminServer(target.manager(), settings, describe=lambda: identity)
    server.start()
    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"Perdure dashboard at {server.url}/ (Ctrl-C to stop)")
    try:
        stopped.wait()
    except KeyboardInterrupt:
        click.echo("Stopping the dashboard.")
    finally:
        server.stop()
