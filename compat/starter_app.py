"""The starter template's app in a child process: ``python -m compat.starter_app DIR PKG N``.

Imports ``PKG.main`` from the rendered project in ``DIR`` (its module-level code calls
``DBOS(config=...)`` and ``SQLAlchemyDatasource.create``), enters FastAPI's ``TestClient``
(whose lifespan launches DBOS), and requests ``/greeting/compat`` N times, printing each answer
on its own line. With ``--hold`` it then waits, still launched, to be killed.
"""

from __future__ import annotations

import importlib
import sys
import threading

from fastapi.testclient import TestClient


def main(argv: list[str]) -> int:
    """Serve the greetings; print each as it comes."""
    project, package, count = argv[0], argv[1], int(argv[2])
    sys.path.insert(0, project)
    app = importlib.import_module(f"{package}.main").app
    with TestClient(app) as client:
        for _ in range(count):
            response = client.get("/greeting/compat")
            response.raise_for_status()
            sys.stdout.write(f"{response.json()}\n")
            sys.stdout.flush()
        if "--hold" in argv:
            threading.Event().wait()  # until the parent's SIGKILL
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
