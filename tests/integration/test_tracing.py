"""OpenTelemetry spans per workflow and step (``enable_otlp``), and ``DBOS.tracer`` for the
application's own spans, on both backends."""

from __future__ import annotations

import gzip
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from opentelemetry import context, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import text

from perdure import DBOS, SetWorkflowID
from perdure.error import DBOSException, DBOSInitializationError
from tests.fixtures.app import make_config

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """What the application's own (global) tracer provider received during the test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)  # once per process: OpenTelemetry allows no reset
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def traced(db_url: str) -> Iterator[type[DBOS]]:
    DBOS(config=make_config(db_url, enable_otlp=True))
    DBOS.launch()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def test_a_workflow_span_holds_its_steps_and_child_workflows(
    spans: InMemorySpanExporter, traced: type[DBOS]
) -> None:
    @DBOS.step(name="fetch")
    def fetch() -> int:
        return 1

    @DBOS.transaction(name="save")
    def save() -> None:
        DBOS.sql_session.execute(text("SELECT 1"))

    @DBOS.workflow(name="child")
    def child() -> int:
        save()
        return fetch()

    @DBOS.workflow(name="parent")
    def parent() -> int:
        return fetch() + DBOS.start_workflow(child).get_result()

    with SetWorkflowID("traced-parent"):
        assert parent() == 2
    finished = {s.name: s for s in spans.get_finished_spans()}
    # A transaction is a step; awaiting the child's result is a recorded step too.
    assert set(finished) == {
        "workflow parent",
        "workflow child",
        "step fetch",
        "step save",
        "step DBOS.getResult",
    }
    steps = [s for s in spans.get_finished_spans() if s.name == "step fetch"]
    workflow, nested = finished["workflow parent"], finished["workflow child"]
    assert workflow.attributes is not None
    assert workflow.attributes["perdure.workflow_id"] == "traced-parent"
    assert workflow.attributes["perdure.executor_id"] == "local"
    assert nested.parent is not None
    assert nested.parent.span_id == workflow.context.span_id  # started from the parent's body
    parents = sorted(s.parent.span_id for s in steps if s.parent is not None)
    assert parents == sorted([workflow.context.span_id, nested.context.span_id])
    assert sorted(s.attributes["perdure.function_id"] for s in steps if s.attributes) == [1, 2]


def test_a_failed_step_and_its_workflow_are_error_spans(
    spans: InMemorySpanExporter, traced: type[DBOS]
) -> None:
    @DBOS.step(name="flaky", retries_allowed=True, max_attempts=2, interval_seconds=0)
    def flaky() -> None:
        raise RuntimeError("down")

    @DBOS.workflow(name="fails")
    def fails() -> None:
        flaky()

    with pytest.raises(Exception, match="flaky"):
        fails()
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert finished["step flaky"].status.status_code == StatusCode.ERROR
    assert finished["workflow fails"].status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in finished["workflow fails"].events)


def test_a_replayed_step_makes_no_span(
    spans: InMemorySpanExporter, traced: type[DBOS], db_url: str
) -> None:
    @DBOS.step(name="once")
    def once() -> int:
        return 1

    @DBOS.workflow(name="replayed")
    def replayed() -> int:
        return once()

    with SetWorkflowID("replayed-1"):
        replayed()
    spans.clear()
    with SetWorkflowID("replayed-1"):  # the same ID again: its outcome is recorded
        replayed()
    assert [s.name for s in spans.get_finished_spans()] == []


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass  # quiet test server


def test_spans_are_exported_to_the_configured_endpoints(db_url: str) -> None:
    collector = HTTPServer(("127.0.0.1", 0), _Collector)
    serving = threading.Thread(target=collector.serve_forever, daemon=True)
    serving.start()
    _Collector.received = []
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
        DBOS(config=make_config(db_url, enable_otlp=True, otlp_traces_endpoints=[endpoint]))
        DBOS.launch()

        @DBOS.workflow(name="exported")
        def exported() -> str:
            return "ok"

        exported()
        DBOS.destroy(destroy_registry=True)  # flushes the exporter
    finally:
        collector.shutdown()
        collector.server_close()
    names = [
        (span.name, {a.key: a.value.string_value for a in resource.resource.attributes})
        for request in _Collector.received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [(name, attributes["service.name"]) for name, attributes in names] == [
        ("workflow exported", "perdure-test")
    ]


def test_otlp_settings_are_checked(db_url: str) -> None:
    for overrides, words in (
        ({"otlp_traces_endpoints": ["http://x/v1/traces"]}, "enable_otlp is not True"),
        ({"enable_otlp": True, "otlp_traces_endpoints": "http://x"}, "list of http(s) URLs"),
        ({"enable_otlp": "yes"}, "'yes' is not True or False"),
    ):
        with pytest.raises(DBOSInitializationError, match=re.escape(words)):
            DBOS(config=make_config(db_url, **overrides))
        DBOS.destroy(destroy_registry=True)


def test_dbos_span_is_the_running_steps_span(
    spans: InMemorySpanExporter, traced: type[DBOS]
) -> None:
    @DBOS.step(name="tagged")
    def tagged() -> None:
        span = DBOS.span
        assert span is not None
        span.set_attribute("order.id", "o-42")

    @DBOS.workflow(name="tagging")
    def tagging() -> None:
        tagged()

    assert DBOS.span is None  # outside any workflow
    tagging()
    [step] = [s for s in spans.get_finished_spans() if s.name == "step tagged"]
    assert step.attributes is not None
    assert step.attributes["order.id"] == "o-42"


def test_propagated_trace_context_survives_the_queue_and_recovery(
    spans: InMemorySpanExporter, traced: type[DBOS], db_url: str
) -> None:
    from perdure import PropagateOtelContext, Queue  # noqa: PLC0415 - only this test
    from tests.integration.system_tables import mark_pending, relaunch  # noqa: PLC0415

    queue = Queue("traced")

    @DBOS.workflow(name="queued-job")
    def queued_job() -> str:
        return "ok"

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        with PropagateOtelContext(), SetWorkflowID("traced-1"):
            handle = queue.enqueue(queued_job)
        trace_id = request.get_span_context().trace_id
    assert handle.get_result() == "ok"
    status = DBOS.get_workflow_status("traced-1")
    assert status is not None
    assert "dbos.otelContext" in (status.attributes or {})
    mark_pending(db_url, "traced-1")
    relaunch(db_url, enable_otlp=True)
    assert DBOS.retrieve_workflow("traced-1").get_result() == "ok"
    runs = [s for s in spans.get_finished_spans() if s.name == "workflow queued-job"]
    # Both executions, the dequeued one and the recovered one, joined the request's trace.
    assert len(runs) == 2
    assert {s.context.trace_id for s in runs} == {trace_id}


def test_dbos_tracer_starts_spans_on_perdures_tracer(
    spans: InMemorySpanExporter, traced: type[DBOS]
) -> None:
    tracer = DBOS.tracer
    assert tracer is DBOS.tracer
    assert (tracer.disable_otlp, tracer.app_id, tracer.otlp_attributes) == (False, None, {})

    @DBOS.workflow(name="spanning")
    def spanning() -> None:
        assert tracer.get_current_span() is DBOS.span  # the workflow's span
        span = tracer.start_span({"name": "custom", "order": "o-1", "n": 3, "gone": None})
        assert tracer.get_current_span() is DBOS.span  # started, not entered
        nested = tracer.start_span({"name": "nested"}, parent=span)
        tracer.end_span(nested)
        tracer.end_span(span)

    spanning()
    finished = {s.name: s for s in spans.get_finished_spans()}
    custom, nested, workflow = finished["custom"], finished["nested"], finished["workflow spanning"]
    assert custom.parent is not None
    assert nested.parent is not None
    assert custom.parent.span_id == workflow.context.span_id
    assert nested.parent.span_id == custom.context.span_id
    assert custom.attributes is not None
    assert {k: custom.attributes.get(k) for k in ("order", "n", "gone", "perdure.executor_id")} == {
        "order": "o-1",
        "n": 3,
        "gone": None,
        "perdure.executor_id": "local",
    }


def test_dbos_tracer_without_enable_otlp_uses_the_global_provider(
    spans: InMemorySpanExporter, dbos: type[DBOS]
) -> None:
    tracer = DBOS.tracer
    assert tracer.disable_otlp is True
    assert tracer.get_current_span() is None
    tracer.end_span(tracer.start_span({"name": "plain"}))
    assert [s.name for s in spans.get_finished_spans()] == ["plain"]
    with pytest.raises(DBOSException, match="'name' string"):
        tracer.start_span({"order": "o-1"})
    with pytest.raises(DBOSException, match="enable_otlp"):
        tracer.config({"name": "app"})


def test_dbos_tracer_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch, dbos: type[DBOS]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed

    @DBOS.workflow(name="untraced")
    def untraced() -> str:
        assert DBOS.tracer.get_current_span() is None
        assert DBOS.span is None
        with pytest.raises(DBOSException, match=re.escape("pip install 'perdure[otel]'")):
            DBOS.tracer.start_span({"name": "custom"})
        return "ran"

    assert untraced() == "ran"
    assert DBOS.tracer.disable_otlp is True


def test_enqueue_options_otel_context_puts_the_workflow_on_that_trace(
    spans: InMemorySpanExporter, traced: type[DBOS]
) -> None:
    from perdure import Queue  # noqa: PLC0415 - only this test

    Queue("traced-by-name")

    @DBOS.workflow(name="joined")
    def joined() -> str:
        return "ok"

    with trace.get_tracer("test").start_as_current_span("request") as request:
        request_context = context.get_current()
        trace_id = request.get_span_context().trace_id
    # Enqueued outside the request's span: only the option puts it on that trace.
    handle = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "joined", "queue_name": "traced-by-name", "otel_context": request_context}
    )
    assert handle.get_result() == "ok"
    [run] = [s for s in spans.get_finished_spans() if s.name == "workflow joined"]
    assert run.context.trace_id == trace_id
