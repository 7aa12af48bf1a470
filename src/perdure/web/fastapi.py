"""``DBOS(fastapi=app)``: Perdure launches with the app and stops with it, a request's
``dbos-idempotency-key`` header is the ID of the workflow its handler starts, and a
`DBOSException` a handler raises becomes a JSON error response, as DBOS 2.x does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from perdure.error import DBOSException
from perdure.execution.context import SetWorkflowID

IDEMPOTENCY_HEADER = "dbos-idempotency-key"
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class LifespanMiddleware:
    """ASGI middleware: launch once the app has started, destroy once it has stopped."""

    def __init__(self, app: Any, launch: Callable[[], None], destroy: Callable[[], None]) -> None:
        self.app = app
        self._launch = launch
        self._destroy = destroy

    async def __call__(self, scope: Message, receive: Any, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def relay(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._launch()
            elif message["type"] == "lifespan.shutdown.complete":
                self._destroy()
            await send(message)

        await self.app(scope, receive, relay)


async def _error_response(_request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse  # noqa: PLC0415 - only with FastAPI installed

    status = getattr(exc, "status_code", None)
    return JSONResponse(
        status_code=status if isinstance(status, int) else 500,
        content={
            "message": str(exc),
            "dbos_error_code": str(getattr(exc, "dbos_error_code", None)),
            "dbos_error": type(exc).__name__,
        },
    )


async def _workflow_id_from_header(request: Any, call_next: Callable[[Any], Any]) -> Any:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if not key:
        return await call_next(request)
    with SetWorkflowID(key):  # the handler runs in a copy of this context
        return await call_next(request)


def attach(app: Any, *, launch: Callable[[], None], destroy: Callable[[], None]) -> None:
    """Wire Perdure into FastAPI application ``app`` (``launch`` may be called again)."""
    app.add_middleware(LifespanMiddleware, launch=launch, destroy=destroy)
    app.add_exception_handler(DBOSException, _error_response)
    app.middleware("http")(_workflow_id_from_header)
