"""DBOS's own starter application runs on Perdure with only its imports changed.

The same check as ``python -m compat starter``, on both backends: the ``dbos-db-starter``
template is read from the dbos 3.4.0 wheel (nothing of DBOS is kept in this repository),
rendered as ``dbos init`` renders it, its ``dbos`` imports pointed at ``perdure``; a child
process serves two greetings through FastAPI's TestClient, is SIGKILLed, and a restarted one
serves the third. The wheel comes from ``$PERDURE_DBOS_WHEEL``, or the cache that
``python -m compat starter`` fills, or is downloaded into it (only the file: dbos is neither
installed nor imported). Only a machine that cannot reach PyPI skips the test, saying so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from compat.venvs import cached_wheel, download

from compat import starter


def _wheel() -> Path | None:
    try:
        return cached_wheel("3.4.0") or download("3.4.0", source=False)
    except (OSError, subprocess.CalledProcessError):
        return None


WHEEL = _wheel()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        WHEEL is None,
        reason="the dbos 3.4.0 wheel could not be downloaded from PyPI (no network?): set "
        "PERDURE_DBOS_WHEEL to a copy of it",
    ),
]


def test_import_lines_are_the_only_change() -> None:
    assert WHEEL is not None
    for path, text in starter.render(starter.read_template(WHEEL)).items():
        ported, changed = starter.port_imports(text)
        before, after = text.splitlines(), ported.splitlines()
        edited = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(edited) == changed, path
        assert all(b.lstrip().startswith(("from perdure", "import perdure")) for _, b in edited)
    main = starter.render(starter.read_template(WHEEL))["perdure_starter/main.py"]
    assert "${" not in main
    assert "from dbos import DBOS, DBOSConfig, SQLAlchemyDatasource" in main


def test_greeting_counts_continue_after_sigkill(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    assert WHEEL is not None
    result = starter.run(
        WHEEL,
        system_url=db_url,
        app_url=starter.app_database_url(other_db_url),
        workdir=tmp_path / "project",
    )
    assert (result.before_kill, result.after_restart) == ([1, 2], [3])
    assert result.import_lines_changed == 1
