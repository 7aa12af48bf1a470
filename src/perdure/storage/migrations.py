"""Finds the numbered ``.sql`` migrations of a backend and decides which ones to apply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from perdure.error import DBOSInitializationError

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema change: its number and its SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(backend: str) -> list[Migration]:
    """All migrations of ``backend`` ("sqlite" or "postgres"), ordered by number."""
    folder = resources.files("perdure.storage") / backend / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        statements = split_statements(entry.read_text(encoding="utf-8"))
        found.append(Migration(int(match.group(1)), entry.name, statements))
    return sorted(found, key=lambda m: m.version)


def split_statements(text: str) -> tuple[str, ...]:
    """Split a migration at semicolons ending a line, except inside ``$$`` function bodies."""
    statements: list[str] = []
    current: list[str] = []
    in_body = False
    for line in text.splitlines():
        if line.lstrip().startswith("--") and not current:
            continue  # a comment between statements
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";").strip())
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return tuple(statements)


def created_tables(migrations: list[Migration]) -> list[str]:
    """Names of the tables the migrations create, in creation order."""
    names = []
    for migration in migrations:
        for statement in migration.statements:
            match = re.search(
                r"^CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?(\w+)", statement, flags=re.M
            )
            if match:
                names.append(match.group(1))
    return names


def pending_migrations(migrations: list[Migration], current: int, *, url: str) -> list[Migration]:
    """The migrations newer than ``current``; refuse a schema newer than this code knows."""
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise DBOSInitializationError(
            f"The system database {url} has schema version {current}, newer than the "
            f"{latest} this version of Perdure understands. Upgrade the perdure package."
        )
    return [m for m in migrations if m.version > current]


def check_version(version: int | None, backend: str, *, url: str, require_current: bool) -> None:
    """Refuse a database this code cannot use without migrating it.

    Args:
        version: Its applied migration number (None: no Perdure schema).
        backend: "sqlite" or "postgres".
        url: The database, as shown in messages (redacted).
        require_current: Also refuse an older schema (a process that runs workflows on it);
            a client or the CLI reads older schemas.
    """
    if version is None:
        raise DBOSInitializationError(
            f"The system database {url} has no Perdure schema. Run `perdure --db URL migrate` "
            "(or launch once with run_migrations left on) to create it."
        )
    pending = pending_migrations(load_migrations(backend), version, url=url)
    if pending and require_current:
        raise DBOSInitializationError(
            f"The system database {url} has schema version {version}; this version of Perdure "
            f"needs {pending[-1].version}, and run_migrations is False. Run `perdure --db URL "
            "migrate` as the role that owns the schema, or launch with run_migrations on."
        )
