"""The admin HTTP server (SPEC §8) of a launched app and of `perdure dashboard`, both backends."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, urlsplit

import pytest

from perdure import DBOS, Queue, SetWorkflowID
from perdure.admin import server as server_module
from perdure.admin.server import MAX_CONNECTIONS, dashboard_page
from perdure.error import DBOSInitializationError
from tests.fixtures.app import make_config, wait_until

TOKEN = "s3cret-token"  # noqa: S105 - a test server's token


def call(
    url: str,
    method: str = "GET",
    body: object = None,
    token: str | None = TOKEN,
    **extra_headers: str,
) -> tuple[int, Any]:
    """One request; the status and the decoded JSON body (the page's text for HTML)."""
    headers = {"Content-Type": "application/json", **extra_headers}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - local
            raw, status, kind = response.read(), response.status, response.headers["Content-Type"]
    except HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers["Content-Type"]
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


@pytest.fixture
def admin(db_url: str) -> Iterator[str]:
    """The base URL of the admin server of a launched app (free port, token required)."""
    DBOS(config=make_config(db_url, admin_server={"port": 0, "token": TOKEN}))
    DBOS.launch()
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.admin_server is not None
    yield runtime.admin_server.url
    DBOS.destroy(destroy_registry=True)


def test_health_needs_the_token(admin: str) -> None:
    status, body = call(f"{admin}/healthz")
    assert status == 200
    assert body == {
        "status": "healthy",
        "application": "perdure-test",
        "executor_id": "local",
        "application_version": "",
    }
    for token in (None, "wrong"):
        status, body = call(f"{admin}/healthz", token=token)
        assert status == 401
        assert "Authorization: Bearer" in body["error"]


def test_workflows_are_listed_inspected_and_filtered(admin: str) -> None:
    @DBOS.step()
    def double(n: int) -> int:
        return 2 * n

    @DBOS.workflow()
    def doubler(n: int) -> int:
        return double(double(n))

    @DBOS.workflow()
    def broken() -> None:
        raise ValueError("no good")

    with SetWorkflowID("orders/1"):  # any character, percent-encoded in the path
        assert doubler(5) == 20
    with SetWorkflowID("broken-1"), pytest.raises(ValueError, match="no good"):
        broken()

    status, listed = call(f"{admin}/workflows")
    assert status == 200
    assert [w["workflow_id"] for w in listed] == ["broken-1", "orders/1"]  # newest first
    assert "input" not in listed[0]  # listings leave payloads out
    _, errors = call(f"{admin}/workflows?status=ERROR")
    assert [w["workflow_id"] for w in errors] == ["broken-1"]
    name = quote(listed[1]["name"])
    _, named = call(f"{admin}/workflows?name={name}&sort_desc=false&limit=1")
    assert [w["workflow_id"] for w in named] == ["orders/1"]

    status, one = call(f"{admin}/workflows/{quote('orders/1', safe='')}")
    assert status == 200
    assert (one["status"], one["output"]) == ("SUCCESS", 20)
    assert one["input"] == {"args": [5], "kwargs": {}}
    _, failed = call(f"{admin}/workflows/broken-1")
    assert failed["error"]["message"] == "no good"
    status, steps = call(f"{admin}/workflows/{quote('orders/1', safe='')}/steps")
    assert status == 200
    assert [(s["function_id"], s["function_name"].split(".")[-1], s["output"]) for s in steps] == [
        (1, "double", 10),
        (2, "double", 20),
    ]


def test_bad_requests_get_a_clear_error(admin: str) -> None:
    for path, status, words in (
        ("/workflows/nope", 404, "No workflow has the ID 'nope'"),
        ("/workflows/nope/steps", 404, "No workflow has the ID 'nope'"),
        ("/workflows?status=DONE", 400, "Unknown status 'DONE'"),
        ("/workflows?limit=many", 400, "limit='many'"),
        ("/workflows?start_time=yesterday", 400, "yesterday"),
        ("/workflows?offset=99999999999999999999", 400, "up to 9007199254740992"),
        ("/workflows?name=a%00b", 400, "name contains a NUL character"),
        ("/workflows/a%00b", 400, "id contains a NUL character"),
        ("/nothing-here", 404, "No such endpoint"),
    ):
        got, body = call(admin + path)
        assert (got, words in body["error"]) == (status, True), (path, body)
    got, body = call(f"{admin}/workflows/nope/cancel")  # GET where only POST is served
    assert (got, body["error"]) == (405, "/workflows/nope/cancel answers POST only.")


def test_cancel_resume_and_fork(admin: str) -> None:
    gate = threading.Event()
    runs: list[int] = []

    @DBOS.step()
    def first() -> int:
        runs.append(1)
        return 1

    @DBOS.step()
    def second() -> int:
        assert gate.wait(20)
        runs.append(2)
        return 2

    @DBOS.workflow()
    def two_steps() -> int:
        return first() + second()

    with SetWorkflowID("steered"):
        handle = DBOS.start_workflow(two_steps)
    wait_until(lambda: runs == [1], what="the first step")
    status, cancelled = call(f"{admin}/workflows/steered/cancel", "POST")
    assert (status, cancelled["status"]) == (200, "CANCELLED")
    gate.set()
    wait_until(lambda: DBOS.get_workflow_status("steered").status == "CANCELLED")  # type: ignore[union-attr]

    status, resumed = call(f"{admin}/workflows/steered/resume", "POST")
    assert status == 200
    assert resumed["workflow_id"] == "steered"
    assert DBOS.retrieve_workflow("steered").get_result() == 3

    status, fork = call(f"{admin}/workflows/steered/fork", "POST", {"start_step": 2})
    assert status == 201
    assert fork["workflow_id"] != "steered"
    assert DBOS.retrieve_workflow(fork["workflow_id"]).get_result() == 3
    assert runs.count(1) == 1  # the fork kept step 1's recorded outcome
    status, body = call(f"{admin}/workflows/steered/fork", "POST", {"start_step": "x"})
    assert status == 400
    assert "'start_step' must be the position" in body["error"]
    assert handle.workflow_id == "steered"


def test_queues_show_their_load_and_settings(admin: str) -> None:
    Queue("emails", concurrency=3, limiter={"limit": 10, "period": 60})
    status, queues = call(f"{admin}/queues")
    assert status == 200
    emails = next(q for q in queues if q["queue_name"] == "emails")
    assert (emails["enqueued"], emails["running"], emails["internal"]) == (0, 0, False)
    assert emails["settings"]["concurrency"] == 3
    assert emails["settings"]["limiter"] == {"limit": 10, "period": 60}


def test_the_dashboard_page_is_served_without_data(admin: str) -> None:
    status, page = call(f"{admin}/", token=None)  # a browser's first visit: no token yet
    assert status == 200
    assert "<title>Perdure dashboard</title>" in page
    assert 'api("/workflows?"' in page  # the data comes from the API, behind the token


def test_without_a_token_only_local_names_and_json_posts_get_in(db_url: str) -> None:
    DBOS(config=make_config(db_url, admin_server={"port": 0}))
    DBOS.launch()
    try:
        runtime = DBOS._runtime
        assert runtime is not None
        assert runtime.admin_server is not None
        base = runtime.admin_server.url
        assert call(f"{base}/healthz", token=None)[0] == 200
        port = base.rsplit(":", 1)[1]
        assert call(f"{base}/healthz", token=None, Host=f"localhost:{port}")[0] == 200
        # A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
        status, body = call(f"{base}/healthz", token=None, Host=f"evil.example:{port}")
        assert status == 403
        assert "Host 'evil.example' is refused" in body["error"]
        # A cross-site form can POST text/plain without asking first; JSON it cannot.
        status, body = call(
            f"{base}/workflows/any/cancel", "POST", {}, token=None, **{"Content-Type": "text/plain"}
        )
        assert status == 415
        assert "Content-Type: application/json" in body["error"]
    finally:
        DBOS.destroy(destroy_registry=True)


def test_admin_settings_are_checked(db_url: str) -> None:
    for settings, words in (
        ({"host": "0.0.0.0"}, "lets other machines in, and no 'token' is set"),  # noqa: S104
        ({"port": 70000}, "'port' is 70000"),
        ({"colour": "red"}, "unknown setting(s) 'colour'"),
        ("yes", "'yes' is not a dict"),
    ):
        with pytest.raises(DBOSInitializationError, match="admin_server") as error:
            DBOS(config=make_config(db_url, admin_server=settings))
        assert words in str(error.value)
        DBOS.destroy(destroy_registry=True)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        DBOS(config=make_config(db_url, admin_server={"port": port}))
        with pytest.raises(DBOSInitializationError, match=f"cannot listen on 127.0.0.1:{port}"):
            DBOS.launch()
    DBOS.destroy(destroy_registry=True)
    DBOS(config=make_config(db_url, admin_server={"enabled": False}))
    DBOS.launch()  # the port is free again, and nothing listens
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.admin_server is None
    DBOS.destroy(destroy_registry=True)


@pytest.mark.parametrize("token_from", ["env", "file", "flag"])
def test_perdure_dashboard_serves_a_database(
    dbos: type[DBOS], db_url: str, token_from: str, tmp_path: Path
) -> None:
    @DBOS.workflow()
    def hello() -> str:
        return "hi"

    with SetWorkflowID("hello-1"):
        hello()
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_ADMIN_TOKEN"}
    command = [
        *(sys.executable, "-c", "from perdure.cli.main import main; main()"),
        *("--db", db_url, "dashboard", "--port", "0"),
    ]
    if token_from == "env":  # noqa: S105 - where the token comes from
        env["PERDURE_ADMIN_TOKEN"] = TOKEN
    elif token_from == "file":  # noqa: S105
        (tmp_path / "token").write_text(TOKEN + "\n")
        command += ["--token-file", str(tmp_path / "token")]
    else:
        command += ["--token", TOKEN]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert line.startswith("Perdure dashboard at http://127.0.0.1:"), line
            base = line.split()[3].rstrip("/")
            status, listed = call(f"{base}/workflows")
            assert (status, [w["workflow_id"] for w in listed]) == (200, ["hello-1"])
            assert call(f"{base}/workflows", token=None)[0] == 401
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(20) == 0
        assert server.stderr is not None
        warned = "visible to other users" in server.stderr.read()
        assert warned == (token_from == "flag")  # noqa: S105


def response_headers(url: str, method: str = "GET", **headers: str) -> tuple[int, Any]:
    """The status and headers of one request."""
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - local
            return response.status, response.headers
    except HTTPError as error:
        return error.code, error.headers


def test_no_response_can_be_framed_or_sniffed(admin: str) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for url, method, headers, expected in [
        (f"{admin}/", "GET", {}, 200),
        (f"{admin}/healthz", "GET", bearer, 200),
        (f"{admin}/healthz", "GET", {}, 401),
        (f"{admin}/nowhere", "GET", bearer, 404),
        (f"{admin}/workflows/x/cancel", "POST", {**bearer, "Content-Type": "text/plain"}, 415),
    ]:
        status, got = response_headers(url, method, **headers)
        assert status == expected
        assert got["X-Frame-Options"] == "DENY"
        assert got["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in got["Content-Security-Policy"]
    # The page runs its own script and style, and nothing else.
    page = urllib.request.urlopen(f"{admin}/", timeout=20)  # noqa: S310 - local
    html, policy = page.read(), page.headers["Content-Security-Policy"]
    for tag in (b"script", b"style"):
        [block] = re.findall(rb"<" + tag + rb">(.*?)</" + tag + rb">", html, flags=re.S)
        digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
        assert f"{tag.decode()}-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'none'" in policy


def test_connections_beyond_the_cap_are_refused_and_silent_ones_dropped(
    admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module._Handler, "timeout", 3.0)
    host, port = urlsplit(admin).hostname, urlsplit(admin).port
    assert host is not None
    silent = [socket.create_connection((host, port), timeout=20) for _ in range(MAX_CONNECTIONS)]
    try:
        # Accepted in order: the next connection finds every slot taken.
        with socket.create_connection((host, port), timeout=20) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        # A client that sends nothing is dropped after the socket timeout.
        for connection in silent:
            assert connection.recv(1024) == b""
    finally:
        for connection in silent:
            connection.close()
    assert call(f"{admin}/healthz")[0] == 200  # the slots are free again


def test_the_dashboard_asks_before_every_change() -> None:
    page = dashboard_page().decode()
    # Every request that changes something is made by act(), and only after confirm().
    assert page.count('method: "POST"') == 1
    act = page[page.index("async function act(action)") :]
    act = act[: act.index("\n}\n")]
    assert 'method: "POST"' in act
    assert act.index("if (!confirm(question)) return;") < act.index('method: "POST"')
    for action in ("cancel", "resume", "fork"):
        assert f'"{action}"' in page
    assert "button.onclick = () => act(action);" in page
