"""DBOS(fastapi=app) and DBOS(flask=app), as DBOS 2.x's starter applications use them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask

from perdure import DBOS
from perdure.error import DBOSNonExistentWorkflowError
from tests.fixtures.app import make_config


@pytest.fixture
def registry_cleared() -> Iterator[None]:
    yield
    DBOS.destroy(destroy_registry=True)


def test_fastapi_app_launches_perdure_and_names_workflows_by_header(
    db_url: str, registry_cleared: None
) -> None:
    app = FastAPI()
    DBOS(fastapi=app, config=make_config(db_url))
    greeted: list[str] = []

    @DBOS.step()
    def record(name: str) -> int:
        greeted.append(name)
        return len(greeted)

    @DBOS.workflow()
    def greet(name: str) -> str:
        return f"Hello, {name}! You are visitor #{record(name)}."

    @app.get("/greeting/{name}")
    def greeting(name: str) -> dict[str, str]:  # a sync handler: FastAPI's thread pool
        return {"greeting": greet(name), "workflow_id": DBOS.workflow_id or ""}

    @app.get("/missing")
    async def missing() -> None:
        raise DBOSNonExistentWorkflowError("nope")

    with TestClient(app) as client:  # its lifespan startup launches Perdure
        first = client.get("/greeting/ada", headers={"dbos-idempotency-key": "greet-ada"})
        again = client.get("/greeting/ada", headers={"dbos-idempotency-key": "greet-ada"})
        other = client.get("/greeting/bob")
        failed = client.get("/missing")
        assert DBOS.retrieve_workflow("greet-ada").get_result() == first.json()["greeting"]
    # The same key is the same workflow: its step ran once, its result came back again.
    assert first.status_code == again.status_code == other.status_code == 200
    assert (
        first.json()["greeting"] == again.json()["greeting"] == ("Hello, ada! You are visitor #1.")
    )
    assert other.json()["greeting"] == "Hello, bob! You are visitor #2."
    assert greeted == ["ada", "bob"]
    assert failed.status_code == 500
    assert failed.json()["dbos_error"] == "DBOSNonExistentWorkflowError"
    assert DBOS._runtime is None  # the app's shutdown destroyed it


def test_flask_app_names_workflows_by_header(db_url: str, registry_cleared: None) -> None:
    app = Flask(__name__)
    DBOS(flask=app, config=make_config(db_url))

    @DBOS.workflow()
    def echo(text: str) -> str:
        return text.upper()

    @app.get("/echo/<text>")
    def route(text: str) -> dict[str, str]:
        return {"echo": echo(text)}

    DBOS.launch()
    client = app.test_client()
    answer = client.get("/echo/hi", headers={"dbos-idempotency-key": "echo-1"})
    assert answer.get_json() == {"echo": "HI"}
    assert DBOS.retrieve_workflow("echo-1").get_result() == "HI"
