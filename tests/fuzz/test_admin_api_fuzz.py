"""The admin API under generated requests: every answer is a JSON reply with a 2xx or 4xx
status, never a 500, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perdure import DBOS, SetWorkflowID
from tests.fixtures.app import make_config

TOKEN = "fuzz-token"  # noqa: S105 - a test server's token
# 503 only for a database that fails, which nothing here makes happen: never expected.
ANSWERS = {200, 201, 400, 401, 404, 405, 409, 413, 415}
FILTERS = ["status", "name", "queue_name", "workflow_id_prefix", "app_version", "user",
           "start_time", "end_time", "limit", "offset", "sort_desc", "load_input"]  # fmt: skip
IDS = st.sampled_from(["known", "unknown"]) | st.text(min_size=1, max_size=20)
PATHS = st.one_of(
    st.just("/workflows"),
    st.just("/queues"),
    st.just("/executors"),
    st.just("/healthz"),
    IDS.map(lambda i: f"/workflows/{quote(i, safe='')}"),
    st.tuples(IDS, st.sampled_from(["steps", "cancel", "resume", "fork", "x"])).map(
        lambda p: f"/workflows/{quote(p[0], safe='')}/{p[1]}"
    ),
    st.text(max_size=30).map(lambda t: "/" + quote(t)),
)
VALUES = (
    st.text(max_size=30)
    | st.integers().map(str)
    | st.sampled_from(
        ["ERROR", "SUCCESS", "true", "2024-01-01T00:00:00", "-1", "99999999999999999999"]
    )
)
QUERIES = st.lists(st.tuples(st.sampled_from(FILTERS) | st.text(max_size=8), VALUES), max_size=5)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "start_step": JSON_VALUES,
            "application_version": JSON_VALUES,
            "new_workflow_id": JSON_VALUES,
        },
    ).map(lambda b: json.dumps(b).encode())
    | JSON_VALUES.map(lambda b: json.dumps(b).encode())
    | st.binary(max_size=100)
)


@pytest.fixture
def admin(db_url: str) -> Iterator[tuple[str, int]]:
    DBOS(config=make_config(db_url, admin_server={"port": 0, "token": TOKEN}))

    @DBOS.workflow()
    def known(n: int) -> int:
        return n

    DBOS.launch()
    with SetWorkflowID("known"):
        known(1)
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.admin_server is not None
    url = urlsplit(runtime.admin_server.url)
    assert url.hostname is not None
    assert url.port is not None
    yield url.hostname, url.port
    DBOS.destroy(destroy_registry=True)


def request(
    admin: tuple[str, int], method: str, target: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    """One request; its status, content type and body."""
    connection = http.client.HTTPConnection(*admin, timeout=20)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers.get_content_type(), response.read()
    finally:
        connection.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.tuples(st.sampled_from(FILTERS), VALUES), max_size=6))
def test_any_listing_query_is_answered_or_refused_clearly(
    admin: tuple[str, int], query: list[tuple[str, str]]
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, kind, raw = request(admin, "GET", "/workflows?" + urlencode(query), None, headers)
    assert kind == "application/json"
    assert status in {200, 400}, (status, raw)
    assert status == 200 or "error" in json.loads(raw)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=PATHS,
    query=QUERIES,
    body=BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=x"]),
    authorized=st.booleans(),
)
def test_any_request_gets_a_json_answer_never_a_500(
    admin: tuple[str, int],
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    content_type: str,
    authorized: bool,
) -> None:
    headers = {"Content-Type": content_type}
    if authorized:
        headers["Authorization"] = f"Bearer {TOKEN}"
    target = path + ("?" + urlencode(query) if query else "")
    status, kind, raw = request(admin, method, target, body if method != "GET" else None, headers)
    if method in ("PUT", "DELETE"):  # not methods this server has
        assert status == 501
        return
    assert status in ANSWERS, (status, raw)
    if kind == "application/json":
        answer = json.loads(raw)
        assert status < 400 or "error" in answer
    else:
        assert (method, path.rstrip("/") or "/") in {("GET", "/"), ("GET", "/dashboard")}
