"""The admin HTTP server: a JSON API over `WorkflowManager` and the dashboard page, on a thread."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from perdure.config import LOOPBACK_HOSTS, AdminServerSettings
from perdure.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSSystemDatabaseError,
)
from perdure.logs import get_logger
from perdure.management import WorkflowManager
from perdure.management.filters import STATUSES
from perdure.management.stranded import DEFAULT_DEAD_AFTER_SEC, find_stranded
from perdure.management.views import jsonable, queue_view, workflow_summary

logger = get_logger(__name__)

# The most rows one listing returns; the dashboard pages with offset (up to a bound every
# database's integers hold).
MAX_LIST_LIMIT = 1000
MAX_OFFSET = 2**53
# Listing filters passed on as given (times are parsed, and checked, by the manager).
_TEXT_FILTERS = (
    "name", "queue_name", "workflow_id_prefix", "app_version", "user", "start_time", "end_time",
)  # fmt: skip
_MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """A request the API refuses: the HTTP status and a message saying what to change."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    """What a route answers: status, body (JSON value or raw bytes) and content type."""

    status: HTTPStatus
    body: Any
    content_type: str = "application/json"


@dataclass(frozen=True)
class Request:
    """A routed request: the path's parameters (decoded), the query, the JSON body."""

    params: dict[str, str]
    query: dict[str, list[str]]
    body: dict[str, Any]


Route = Callable[[Request], Reply]


class AdminApi:
    """The routes, apart from the HTTP plumbing: each takes a `Request`, returns a `Reply`."""

    def __init__(self, manager: WorkflowManager, describe: Callable[[], dict[str, Any]]) -> None:
        self._manager = manager
        self._describe = describe
        self.routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("GET", re.compile(r"/healthz"), self.health),
            ("GET", re.compile(r"/workflows"), self.list_workflows),
            ("GET", re.compile(r"/workflows/(?P<id>[^/]+)"), self.get_workflow),
            ("GET", re.compile(r"/workflows/(?P<id>[^/]+)/steps"), self.steps),
            ("POST", re.compile(r"/workflows/(?P<id>[^/]+)/cancel"), self.cancel),
            ("POST", re.compile(r"/workflows/(?P<id>[^/]+)/resume"), self.resume),
            ("POST", re.compile(r"/workflows/(?P<id>[^/]+)/fork"), self.fork),
            ("GET", re.compile(r"/queues"), self.queues),
            ("GET", re.compile(r"/executors"), self.executors),
            ("GET", re.compile(r"/stranded"), self.stranded),
        ]

    def health(self, _: Request) -> Reply:
        return Reply(HTTPStatus.OK, {"status": "healthy", **self._describe()})

    def list_workflows(self, request: Request) -> Reply:
        query = request.query
        statuses = [s.upper() for s in query.get("status", [])]
        wrong = [s for s in statuses if s not in STATUSES]
        if wrong:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Unknown status {wrong[0]!r}; use one of {', '.join(STATUSES)}.",
            )
        filters: dict[str, Any] = {
            "status": statuses or None,
            "limit": _int(query, "limit", 50, high=MAX_LIST_LIMIT),
            "offset": _int(query, "offset", 0),
            "sort_desc": _flag(query, "sort_desc", default=True),
            "load_input": False,
            "load_output": False,
        }
        for key in _TEXT_FILTERS:
            if query.get(key):
                filters[key] = _text(key, query[key][0])
        try:
            found = self._manager.list_workflows(**filters)
        except ValueError as exc:  # a malformed start_time / end_time
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        return Reply(HTTPStatus.OK, [workflow_summary(s) for s in found])

    def get_workflow(self, request: Request) -> Reply:
        return Reply(HTTPStatus.OK, jsonable(self._status(request.params["id"])))

    def steps(self, request: Request) -> Reply:
        workflow_id = self._status(request.params["id"]).workflow_id
        return Reply(HTTPStatus.OK, jsonable(self._manager.list_workflow_steps(workflow_id)))

    # An unknown ID is a 404 (DBOSNonExistentWorkflowError) for cancel, resume and fork.
    def cancel(self, request: Request) -> Reply:
        workflow_id = self._status(request.params["id"]).workflow_id  # a 404 if unknown
        self._manager.cancel_workflows([workflow_id], cancel_children=True)
        return Reply(HTTPStatus.OK, workflow_summary(self._status(workflow_id)))

    def resume(self, request: Request) -> Reply:
        workflow_id = request.params["id"]
        self._manager.resume_workflow(workflow_id)
        return Reply(HTTPStatus.OK, workflow_summary(self._status(workflow_id)))

    def fork(self, request: Request) -> Reply:
        body, workflow_id = request.body, request.params["id"]
        start_step = body.get("start_step")
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Fork of {workflow_id!r}: 'start_step' must be the position (an integer >= 0) "
                f"of the first step to run again, got {start_step!r:.80}.",
            )
        options = {k: body.get(k) for k in ("application_version", "new_workflow_id")}
        for key, value in options.items():
            if value is not None and not isinstance(value, str):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    f"Fork of {workflow_id!r}: {key!r} must be a string, got {value!r:.80}.",
                )
            if value is not None:
                _text(key, value)
        if start_step > MAX_OFFSET:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Fork of {workflow_id!r}: 'start_step' {start_step} is beyond any workflow.",
            )
        forked = self._manager.fork_workflow(workflow_id, start_step, **options)
        return Reply(HTTPStatus.CREATED, workflow_summary(self._status(forked)))

    def queues(self, _: Request) -> Reply:
        return Reply(HTTPStatus.OK, [queue_view(q) for q in self._manager.list_queues()])

    def executors(self, _: Request) -> Reply:
        return Reply(HTTPStatus.OK, jsonable(self._manager.list_executors()))

    def stranded(self, request: Request) -> Reply:
        """PENDING or ENQUEUED workflows no live process will run, with the reason
        (``dead_after_sec``: the silence after which a process is dead, default 60)."""
        dead_after = _int(request.query, "dead_after_sec", round(DEFAULT_DEAD_AFTER_SEC))
        engine = self._manager.engine
        found = find_stranded(
            self._manager.store,
            dead_after_sec=max(dead_after, 1),
            this_instance=engine.instance_id if engine is not None else None,
            limit=_int(request.query, "limit", 100, high=MAX_LIST_LIMIT),
        )
        return Reply(HTTPStatus.OK, [s.to_json() for s in found])

    def _status(self, workflow_id: str) -> Any:
        status = self._manager.get_workflow_status(workflow_id)
        if status is None:
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                f"No workflow has the ID {workflow_id!r}; list them with GET /workflows.",
            )
        return status


def _int(query: dict[str, list[str]], key: str, default: int, *, high: int = MAX_OFFSET) -> int:
    if not query.get(key):
        return default
    text = query[key][0]
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > high:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, f"{key}={text[:40]!r}: give a whole number from 0 up to {high}."
        )
    return int(text)


def _text(key: str, value: str) -> str:
    """A text value from a request; NUL, which no database column can hold, is refused."""
    if "\x00" in value:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key} contains a NUL character; remove it.")
    return value


def _flag(query: dict[str, list[str]], key: str, *, default: bool) -> bool:
    if not query.get(key):
        return default
    text = query[key][0].lower()
    if text not in ("true", "false", "1", "0"):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key}={text!r}: give true or false.")
    return text in ("true", "1")


@functools.cache
def dashboard_page() -> bytes:
    """The dashboard: one static page that reads the JSON API."""
    return resources.files("perdure.admin").joinpath("dashboard.html").read_bytes()


def _inline_hashes(page: bytes, tag: bytes) -> str:
    """CSP sources allowing exactly the page's own inline ``<tag>`` blocks, by SHA-256."""
    blocks = re.findall(rb"<" + tag + rb">(.*?)</" + tag + rb">", page, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'"
        for block in blocks
    )


# Nothing may frame a page of this server (clickjacking), guess a content type, or load
# anything but the page's own script and style and its calls to this API.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


@functools.cache
def page_policy() -> str:
    """The Content-Security-Policy of the dashboard page."""
    page = dashboard_page()
    return (
        f"default-src 'none'; script-src {_inline_hashes(page, b'script')}; "
        f"style-src {_inline_hashes(page, b'style')}; connect-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# A client that stops sending or reading for this long is dropped (a slow-loris cannot
# hold a thread); at most this many connections are served at once, the rest refused (503).
SOCKET_TIMEOUT_SEC = 30.0
MAX_CONNECTIONS = 32


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT_SEC  # applied to the connection's socket

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if method == "GET" and path in ("/", "/dashboard"):
            # The page holds no data; it asks for the token when the API answers 401.
            page = Reply(HTTPStatus.OK, dashboard_page(), "text/html; charset=utf-8")
            self._send(page, policy=page_policy())
            return
        try:
            self._authorize()
            route, params = self._route(method, path)
            body = self._json_body() if method == "POST" else {}
            reply = route(Request(params, parse_qs(url.query), body))
        except ApiError as exc:
            reply = Reply(exc.status, {"error": str(exc)})
        except DBOSNonExistentWorkflowError as exc:
            reply = Reply(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except DBOSConflictingWorkflowError as exc:
            reply = Reply(HTTPStatus.CONFLICT, {"error": str(exc)})
        except DBOSSystemDatabaseError as exc:  # the database failed, not the request
            logger.warning("Admin server: %s %s: %s", method, url.path, exc)
            reply = Reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except DBOSException as exc:  # refused by the manager: a state that does not allow it
            reply = Reply(HTTPStatus.CONFLICT, {"error": str(exc)})
        except Exception:
            logger.exception("Admin server: %s %s failed", method, self.path)
            reply = Reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "Internal error; the server's log (logger 'perdure') has the details."},
            )
        self._send(reply)

    def _authorize(self) -> None:
        token = self.server.token
        if token is None:
            # Without a token only this machine gets in; a page in its browser must not
            # either, through a DNS name rebound to 127.0.0.1: only loopback names may be used.
            host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
            if host not in LOOPBACK_HOSTS:
                raise ApiError(
                    HTTPStatus.FORBIDDEN,
                    f"Host {host!r} is refused: without a token this server answers only to "
                    "127.0.0.1, localhost and ::1. Set a token to serve other names.",
                )
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(
                HTTPStatus.UNAUTHORIZED,
                "This admin server requires the header 'Authorization: Bearer <token>' with the "
                "token set in its admin_server config (or --token).",
            )

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route_method, pattern, route in self.server.api.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:  # IDs may hold any character, percent-encoded
                return route, {k: _text(k, unquote(v)) for k, v in match.groupdict().items()}
            allowed.append(route_method)
        if allowed:
            raise ApiError(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{path} answers {', '.join(allowed)} only."
            )
        raise ApiError(HTTPStatus.NOT_FOUND, f"No such endpoint: {method} {path}.")

    def _json_body(self) -> dict[str, Any]:
        # A JSON content type makes a browser ask before sending a cross-site POST, which this
        # server never allows: no other site's page can cancel, resume or fork.
        if self.headers.get_content_type() != "application/json":
            raise ApiError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "POST requests must send 'Content-Type: application/json' (a JSON object, or "
                "an empty body).",
            )
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isdigit():
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Content-Length {declared!r} is not a number.")
        length = int(declared)
        if length > _MAX_BODY_BYTES:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The request body is too large.")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"The body is not JSON: {exc}.") from exc
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "The body must be a JSON object.")
        return body

    def _send(self, reply: Reply, policy: str = API_POLICY) -> None:
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", policy)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if reply.status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("Admin server: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2 * MAX_CONNECTIONS  # the listen backlog: over the cap gets a 503

    def __init__(self, address: tuple[str, int], api: AdminApi, token: str | None) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.token = token
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # a thread serves it
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse(connection: socket.socket) -> None:
    """Answer 503 on a connection over the cap, without reading it or giving it a thread."""
    body = b'{"error": "Too many connections to the admin server; retry shortly."}'
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n"
        f"Content-Security-Policy: {API_POLICY}\r\nX-Frame-Options: DENY\r\n"
        "X-Content-Type-Options: nosniff\r\n\r\n"
    )
    try:
        connection.settimeout(1.0)
        connection.sendall(head.encode() + body)
    except OSError:
        logger.debug("Admin server: could not answer a refused connection")


class AdminServer:
    """Serves `AdminApi` and the dashboard on a background thread until `stop`."""

    def __init__(
        self,
        manager: WorkflowManager,
        settings: AdminServerSettings,
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        self._settings = settings
        self._api = AdminApi(manager, describe)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL it listens on (with the actual port when port 0 was asked for)."""
        assert self._server is not None  # noqa: S101 - only after start
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> None:
        """Bind and start serving; a taken port is a `DBOSInitializationError`."""
        settings = self._settings
        try:
            self._server = _Server((settings.host, settings.port), self._api, settings.token)
        except OSError as exc:
            raise DBOSInitializationError(
                f"The admin server cannot listen on {settings.host}:{settings.port} ({exc}). "
                "Choose another admin_server 'port' (0 picks a free one) or stop what uses it."
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="perdure-admin-server", daemon=True
        )
        self._thread.start()
        logger.info("Admin server listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
