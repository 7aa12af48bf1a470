"""State every part of the facade shares: the registry and the current runtime."""

from __future__ import annotations

from typing import ClassVar

from perdure.error import DBOSInitializationError
from perdure.execution.app_database import ApplicationDatabase
from perdure.execution.registry import Registry
from perdure.runtime import Runtime


class FacadeBase:
    """Holds the facade's only state: what decorators registered, and the configured runtime."""

    _registry: ClassVar[Registry] = Registry()
    _runtime: ClassVar[Runtime | None] = None
    # Databases of SQLAlchemyDatasources: their pooled connections close at each destroy (the
    # engines stay usable: a datasource outlives a destroy and a new DBOS(config=...)).
    _datasources: ClassVar[list[ApplicationDatabase]] = []

    @classmethod
    def _require_runtime(cls) -> Runtime:
        if cls._runtime is None:
            raise DBOSInitializationError(
                "Perdure is not configured: call DBOS(config={'name': 'my-app'}) and then "
                "DBOS.launch() before running workflows."
            )
        return cls._runtime
