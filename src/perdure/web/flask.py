"""``DBOS(flask=app)``: a request's ``dbos-idempotency-key`` header is the ID of the workflow
its handler starts, as DBOS 2.x does. (Flask has no startup hook: call ``DBOS.launch()``.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from perdure.execution.context import SetWorkflowID
from perdure.web.fastapi import IDEMPOTENCY_HEADER

_ENVIRON_KEY = "HTTP_" + IDEMPOTENCY_HEADER.upper().replace("-", "_")


class IdempotencyMiddleware:
    """WSGI middleware around the app's ``wsgi_app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        key = environ.get(_ENVIRON_KEY)
        if not key:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        with SetWorkflowID(key):
            return self.app(environ, start_response)  # type: ignore[no-any-return]


def attach(app: Any) -> None:
    """Wire Perdure into Flask application ``app``."""
    app.wsgi_app = IdempotencyMiddleware(app.wsgi_app)
