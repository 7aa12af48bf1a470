"""``python -m compat starter``: DBOS's own starter application, run on Perdure.

The ``dbos-db-starter`` template ships inside the dbos wheel (``dbos/_templates/``): a FastAPI
app whose ``/greeting/{name}`` workflow counts greetings in a table through
``SQLAlchemyDatasource``. This module renders it as ``dbos init`` does (``dbos/cli/
_template_init.py``: files ending in ``.dbos`` get their ``${...}`` placeholders filled and lose
the suffix; ``__package/`` becomes the package folder), changes only its ``dbos`` import lines
to ``perdure``, creates its table with the template's own migration script, and then:

1. a child process serves two greetings through FastAPI's ``TestClient`` (counts 1 and 2) and
   is killed with SIGKILL while still running;
2. a second child, on the same databases, serves one more: the count must be 3.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from compat import venvs

TEMPLATE = "dbos/_templates/dbos-db-starter/"
PROJECT_NAME = "perdure-starter"
GREETING = re.compile(r"Greetings, (?P<name>.+)! You have been greeted (?P<count>\d+) times\.")
CHILD_TIMEOUT_SEC = 120
_FROM_DBOS = re.compile(r"^(\s*)from dbos(\.\S+)? import ", re.MULTILINE)
_IMPORT_DBOS = re.compile(r"^(\s*)import dbos(\.\S+)?(\s*)$", re.MULTILINE)


@dataclass(frozen=True)
class StarterRun:
    """What a run saw: the counts before the kill and after the restart."""

    backend: str
    before_kill: list[int]
    after_restart: list[int]
    import_lines_changed: int

    @property
    def passed(self) -> bool:
        return self.before_kill == [1, 2] and self.after_restart == [3]


def read_template(wheel: Path) -> dict[str, str]:
    """The template's files, by path relative to the template folder."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name[len(TEMPLATE) :]: archive.read(name).decode("utf-8")
            for name in archive.namelist()
            if name.startswith(TEMPLATE) and not name.endswith("/")
        }


def _app_name_to_db_name(app_name: str) -> str:
    # As dbos._dbos_config._app_name_to_db_name.
    name = app_name.replace("-", "_").replace(" ", "_").lower()
    return name if not name[0].isdigit() else f"_{name}"


def render(files: dict[str, str], project_name: str = PROJECT_NAME) -> dict[str, str]:
    """The project ``dbos init`` would write, as a mapping of relative path to text."""
    package_name = project_name.replace("-", "_")
    context = {
        "project_name": project_name,
        "default_db_name": _app_name_to_db_name(project_name),
        "package_name": package_name,
        "start_command": f"python3 -m {package_name}.main",
        "migration_section": "database:\n  migrate:\n    - python3 migrations/create_table.py\n",
    }
    rendered = {}
    for path, text in files.items():
        target = path.replace("__package/", f"{package_name}/", 1)
        content = text
        if target.endswith(".dbos"):
            target = target[: -len(".dbos")]
            for key, value in context.items():
                content = content.replace(f"${{{key}}}", value)
        rendered[target] = content
    return rendered


def port_imports(text: str) -> tuple[str, int]:
    """``text`` with its dbos import lines pointed at perdure, and how many lines changed."""
    text, from_count = _FROM_DBOS.subn(r"\1from perdure\2 import ", text)
    text, import_count = _IMPORT_DBOS.subn(r"\1import perdure\2 as dbos\3", text)
    return text, from_count + import_count


def write_project(wheel: Path, folder: Path) -> tuple[str, int]:
    """Render the template into ``folder`` with its imports ported; (package, lines changed)."""
    changed = 0
    for path, text in render(read_template(wheel)).items():
        content, count = port_imports(text) if path.endswith(".py") else (text, 0)
        changed += count
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return PROJECT_NAME.replace("-", "_"), changed


def _child(
    python: str, project: Path, package: str, env: dict[str, str], *, greetings: int, hold: bool
) -> subprocess.Popen[str]:
    command = [python, "-m", "compat.starter_app", str(project), package, str(greetings)]
    if hold:
        command.append("--hold")
    return subprocess.Popen(  # noqa: S603 - our interpreter and module
        command,
        cwd=venvs.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _counts(process: subprocess.Popen[str], wanted: int) -> list[int]:
    """Greeting counts the child prints, one per line, until ``wanted``, its exit, or a
    deadline (the child is then killed, which ends the read)."""
    assert process.stdout is not None  # noqa: S101 - Popen(stdout=PIPE) above
    watchdog = threading.Timer(CHILD_TIMEOUT_SEC, _kill, args=(process,))
    watchdog.start()
    counts: list[int] = []
    try:
        for line in process.stdout:
            found = GREETING.search(line)
            if found:
                counts.append(int(found.group("count")))
            if len(counts) == wanted:
                break
    finally:
        watchdog.cancel()
    return counts


def _tail(stderr: str) -> str:
    return "\n".join(stderr.splitlines()[-40:]) or "(no stderr)"


def run(
    wheel: Path, *, system_url: str, app_url: str, workdir: Path, python: str = sys.executable
) -> StarterRun:
    """Render, migrate, serve two greetings, SIGKILL, restart, serve one more."""
    package, changed = write_project(wheel, workdir)
    env = {**os.environ, "DBOS_DATABASE_URL": app_url, "DBOS_SYSTEM_DATABASE_URL": system_url}
    subprocess.run(  # noqa: S603 - the template's own migration script
        [python, str(workdir / "migrations" / "create_table.py")],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=CHILD_TIMEOUT_SEC,
    )
    first = _child(python, workdir, package, env, greetings=2, hold=True)
    try:
        before = _counts(first, 2)
    finally:
        _kill(first)  # SIGKILL while it is still running, launched
        _, stderr = first.communicate(timeout=30)
    if before != [1, 2]:
        raise RuntimeError(f"first run printed counts {before}:\n{_tail(stderr)}")
    second = _child(python, workdir, package, env, greetings=1, hold=False)
    try:
        after = _counts(second, 1)
        _, stderr = second.communicate(timeout=CHILD_TIMEOUT_SEC)
    finally:
        if second.returncode is None:  # the read or the wait failed: leave nothing running
            _kill(second)
            second.communicate(timeout=30)
    if second.returncode != 0 or after != [3]:
        raise RuntimeError(f"restarted run printed counts {after}:\n{_tail(stderr)}")
    backend = "postgres" if system_url.startswith("postgres") else "sqlite"
    return StarterRun(backend, before, after, changed)


def app_database_url(url: str) -> str:
    """The template's SQLAlchemy URL for a PostgreSQL database: psycopg 3, as its README says."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _on_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def fresh_postgres(server_url: str) -> Iterator[tuple[str, str]]:
    """Two new databases (system, application) on the server; dropped afterwards."""
    import psycopg  # noqa: PLC0415 - only for a PostgreSQL run
    from psycopg import sql  # noqa: PLC0415

    system_name = f"compat_starter_{uuid.uuid4().hex[:10]}"
    names = (system_name, f"{system_name}_app")
    maintenance = _on_database(server_url, "postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield (
            _on_database(server_url, names[0]),
            app_database_url(_on_database(server_url, names[1])),
        )
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            for name in names:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


def _report(result: StarterRun) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    sys.stdout.write(
        f"starter on {result.backend}: {verdict}: counts {result.before_kill} before SIGKILL, "
        f"{result.after_restart} after restart ({result.import_lines_changed} import line(s) "
        "changed, nothing else)\n"
    )


def main(version: str, *, postgres_url: str | None) -> int:
    """Run the starter on SQLite, and on PostgreSQL when a server URL is given."""
    wheel = venvs.download(version, source=False)
    python = str(venvs.perdure_python())
    passed = True
    with tempfile.TemporaryDirectory(prefix="perdure-starter-") as tmp:
        folder = Path(tmp)
        backends: list[tuple[str, contextlib.AbstractContextManager[tuple[str, str]]]] = [
            (
                "sqlite",
                contextlib.nullcontext(
                    (f"sqlite:///{folder / 'system.sqlite'}", f"sqlite:///{folder / 'app.sqlite'}")
                ),
            )
        ]
        if postgres_url:
            backends.append(("postgres", fresh_postgres(postgres_url)))
        for backend, databases in backends:
            with databases as (system_url, app_url):
                try:
                    result = run(
                        wheel,
                        system_url=system_url,
                        app_url=app_url,
                        workdir=folder / backend,
                        python=python,
                    )
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    sys.stdout.write(f"starter on {backend}: FAIL: {exc}\n")
                    passed = False
                    continue
            _report(result)
            passed = passed and result.passed
    return 0 if passed else 1
