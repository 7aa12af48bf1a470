"""``perdure dashboard``: the admin API and web dashboard over a system database."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from perdure.admin import AdminServer
from perdure.cli.target import Target, pass_target
from perdure.config import parse_admin_server
from perdure.error import DBOSInitializationError
from perdure.storage import redact_url


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
    "--token",
    envvar="PERDURE_ADMIN_TOKEN",
    help="Bearer token every API call must send (required unless --host is a loopback "
    "address); default $PERDURE_ADMIN_TOKEN.",
)
@pass_target
def dashboard(target: Target, host: str, port: int, token: str | None) -> None:
    """Serve the web dashboard and the admin API until interrupted (Ctrl-C).

    Cancel, resume and fork act on the database: a resumed or forked workflow runs in the
    first launched process free to take it.
    """
    url = target.url()
    try:
        settings = parse_admin_server({"host": host, "port": port, "token": token})
    except DBOSInitializationError as exc:
        raise click.BadParameter(str(exc)) from exc
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
