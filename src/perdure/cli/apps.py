"""The user's application, for the commands that run its code: ``--app`` imports its modules.

Importing a module registers its ``@DBOS.workflow`` functions (the current code a replay
checks); a ``DBOS(config=...)`` it makes gives its serializer, its application version and,
when ``--db`` is not given, its system database. A module must not launch Perdure when
imported: the command would then run workflows itself.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from perdure.cli.target import Target
from perdure.config import SYSTEM_DATABASE_URL_ENV
from perdure.dbos import DBOS
from perdure.error import DBOSInitializationError

APP_ENV = "PERDURE_APP"

app_option = click.option(
    "-a",
    "--app",
    "apps",
    multiple=True,
    envvar=APP_ENV,
    metavar="MODULE",
    help=f"Module of the application to import, e.g. myapp.workflows (repeatable; default: "
    f"${APP_ENV}, space-separated). Run from the directory that holds it, or set PYTHONPATH.",
)


def import_apps(modules: tuple[str, ...], *, required: bool = True) -> None:
    """Import the application's modules (the working directory first on the path).

    Raises:
        click.ClickException: None given (if ``required``), one cannot be imported, or one
            launched Perdure when imported.
    """
    if not modules:
        if required:
            raise click.ClickException(
                f"Name the application's module with --app MODULE (or set ${APP_ENV}): its "
                "workflows are the current code to check."
            )
        return
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise click.ClickException(
                f"Cannot import application module {name!r}: {exc}. Give its dotted name, and "
                "run from the directory that holds it (or set PYTHONPATH)."
            ) from exc
    _refuse_launched(modules)


def _refuse_launched(modules: tuple[str, ...]) -> None:
    runtime = DBOS._runtime
    if runtime is None:
        return
    try:
        runtime.engine  # noqa: B018 - raises unless launched
    except DBOSInitializationError:
        return
    DBOS.destroy()
    raise click.ClickException(
        f"Importing {', '.join(modules)} launched Perdure, so this command would run "
        "workflows itself. Call DBOS.launch() under `if __name__ == '__main__':` (or in your "
        "server's startup), not at import time."
    )


def database_url(target: Target) -> str:
    """``--db`` (or the environment), else the system database the imported app configured."""
    if target.db_url:
        return target.db_url
    runtime = DBOS._runtime
    if runtime is not None:
        return runtime.settings.system_database_url
    raise click.ClickException(
        f"No database given: pass --db URL, set {SYSTEM_DATABASE_URL_ENV}, or configure "
        "DBOS(config=...) in the --app module."
    )
