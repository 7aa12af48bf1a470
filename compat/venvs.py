"""The cache of the compatibility tooling: virtualenvs and downloads from PyPI.

Everything lives under ``.compat-venvs/`` at the repository root (git-ignored; another folder
with ``PERDURE_COMPAT_CACHE``). As in ``benchmarks/``, dbos is installed only into virtualenvs
of its own; Perdure's own environment never holds it.

- ``dbos-X.Y.Z/``: a virtualenv with that dbos from PyPI, for introspection.
- ``perdure/``: a virtualenv with this checkout of Perdure (editable) and the third-party
  packages the starter template and DBOS's test suite import, but **not** dbos.
- ``downloads/``: the dbos wheels and source releases fetched with ``pip download``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What DBOS's tests (dev dependency group of its pyproject) and the starter template import,
# besides dbos itself; Perdure brings psycopg, SQLAlchemy, aiosqlite, croniter and click.
# Not confluent-kafka: DBOS's Kafka tests need a broker, and Perdure has no Kafka consumer.
PERDURE_VENV_PACKAGES = (
    "pytest>=8",
    "pytest-timeout>=2.3",
    "pytest-mock>=3.14",
    "pytest-asyncio>=0.25",
    "inline-snapshot>=0.28",
    "requests>=2.32",
    "fastapi>=0.121",
    "uvicorn>=0.35",
    "httpx2",
    "pydantic>=2",
    "psycopg2-binary>=2.9",
    "pyyaml>=6",
    "python-dateutil>=2.9",
    "flask>=2.2",
    "opentelemetry-api>=1.42",
    "opentelemetry-sdk>=1.42",
    "opentelemetry-exporter-otlp-proto-http>=1.42",
    "opentelemetry-instrumentation-logging>=0.63b0",
)


def cache_dir(*, create: bool = True) -> Path:
    """The cache folder (created on first use, unless ``create`` is false)."""
    folder = Path(os.environ.get("PERDURE_COMPAT_CACHE", ROOT / ".compat-venvs"))
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log(message: str) -> None:
    sys.stderr.write(f"compat: {message}\n")


def _python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    _log(" ".join(command[3:]))
    subprocess.run(command, check=True, stdout=sys.stderr)  # noqa: S603 - our own venv's pip


def _installed_version(python: Path, distribution: str) -> str | None:
    if not python.exists():
        return None
    code = (
        "import importlib.metadata as m, sys\n"
        "try: print(m.version(sys.argv[1]))\n"
        "except m.PackageNotFoundError: print('')"
    )
    done = subprocess.run(  # noqa: S603 - our own venv's interpreter
        [str(python), "-c", code, distribution], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


def _create(env_dir: Path) -> Path:
    _log(f"creating the virtualenv {env_dir}")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    return _python(env_dir)


def dbos_python(version: str) -> Path:
    """The interpreter of a virtualenv holding dbos ``version`` (created or reused)."""
    env_dir = cache_dir() / f"dbos-{version}"
    python = _python(env_dir)
    if _installed_version(python, "dbos") == version:
        return python
    python = _create(env_dir)
    _pip(python, "install", "--quiet", f"dbos=={version}")
    return python


def perdure_python() -> Path:
    """The interpreter of the virtualenv with this checkout of Perdure and no dbos."""
    env_dir = cache_dir() / "perdure"
    python = _python(env_dir)
    wanted = hashlib.sha256("\n".join(PERDURE_VENV_PACKAGES).encode()).hexdigest()
    stamp = env_dir / "compat-packages.sha256"
    ready = stamp.exists() and stamp.read_text().strip() == wanted
    if ready and _installed_version(python, "perdure") and not _installed_version(python, "dbos"):
        return python
    python = _create(env_dir)
    _pip(python, "install", "--quiet", "-e", str(ROOT), *PERDURE_VENV_PACKAGES)
    stamp.write_text(wanted + "\n")
    return python


def download(version: str, *, source: bool) -> Path:
    """The dbos wheel (or, with ``source``, the source release) of ``version``, downloaded once."""
    folder = cache_dir() / "downloads"
    pattern = f"dbos-{version}.tar.gz" if source else f"dbos-{version}-*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    folder.mkdir(exist_ok=True)
    args = ["download", "--quiet", "--no-deps", "-d", str(folder)]
    if source:
        args += ["--no-binary", ":all:"]
    else:
        args += ["--only-binary", ":all:"]
    _pip(Path(sys.executable), *args, f"dbos=={version}")
    found = sorted(folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download left no {pattern} in {folder}")
    return found[0]


def cached_wheel(version: str) -> Path | None:
    """The dbos wheel from ``$PERDURE_DBOS_WHEEL`` or the cache, without downloading; or None."""
    configured = os.environ.get("PERDURE_DBOS_WHEEL")
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    found = sorted((cache_dir(create=False) / "downloads").glob(f"dbos-{version}-*.whl"))
    return found[0] if found else None
