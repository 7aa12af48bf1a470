"""OpenTelemetry spans for each workflow execution and each step, when ``enable_otlp`` is set.

OpenTelemetry is an optional extra (``pip install 'perdure[otel]'``): it is imported only when
tracing is enabled. Without ``otlp_traces_endpoints`` the spans go to the application's global
tracer provider (one it configured itself); with them, to a provider of Perdure's own that
exports over OTLP/HTTP to each endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from perdure.error import DBOSInitializationError

TRACER_NAME = "perdure"
# The attribute under which a propagated trace context travels with a workflow (DBOS's key).
OTEL_CARRIER_ATTRIBUTE = "dbos.otelContext"
_INSTALL = "pip install 'perdure[otel]'"


class Tracing:
    """Starts the spans; every span carries the workflow ID (``perdure.workflow_id``)."""

    def __init__(self, app_name: str, endpoints: Sequence[str]) -> None:
        try:
            from opentelemetry import context, trace  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise DBOSInitializationError(
                f"Config key 'enable_otlp' needs the OpenTelemetry packages: {_INSTALL}."
            ) from exc
        self._context = context
        self._provider: Any = None
        if not endpoints:
            self._tracer: Any = trace.get_tracer(TRACER_NAME)
            return
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
            from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
            from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        except ImportError as exc:
            raise DBOSInitializationError(
                "Config key 'otlp_traces_endpoints' needs the OpenTelemetry SDK and OTLP "
                f"exporter: {_INSTALL}."
            ) from exc
        provider = TracerProvider(resource=Resource.create({"service.name": app_name}))
        for endpoint in endpoints:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME)

    def current_context(self) -> object:
        """The caller's trace context: a workflow started here becomes a child of its span."""
        return self._context.get_current()

    def workflow(
        self, workflow_id: str, name: str, parent: object, attributes: dict[str, str]
    ) -> AbstractContextManager[Any]:
        """The span of one execution of a workflow (a recovery is a new execution)."""
        return self._tracer.start_as_current_span(  # type: ignore[no-any-return]
            f"workflow {name}",
            context=parent,
            attributes={"perdure.workflow_id": workflow_id, "perdure.workflow_name": name}
            | attributes,
        )

    def step(self, workflow_id: str, name: str, position: int) -> AbstractContextManager[Any]:
        """The span of one step's execution, all its attempts (replayed steps have none)."""
        return self._tracer.start_as_current_span(  # type: ignore[no-any-return]
            f"step {name}",
            attributes={
                "perdure.workflow_id": workflow_id,
                "perdure.step_name": name,
                "perdure.function_id": position,
            },
        )

    def parent_of(self, attributes: dict[str, Any] | None, started_in: object) -> object:
        """The context a workflow's span belongs under: the trace propagated with it
        (`PropagateOtelContext`, kept through queues and recovery), else ``started_in``."""
        carrier = (attributes or {}).get(OTEL_CARRIER_ATTRIBUTE)
        if not isinstance(carrier, dict):
            return started_in
        from opentelemetry import trace  # noqa: PLC0415 - an optional extra
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        extracted = TraceContextTextMapPropagator().extract(
            {str(k): str(v) for k, v in carrier.items()}
        )
        valid = trace.get_current_span(extracted).get_span_context().is_valid
        return extracted if valid else started_in

    def shutdown(self) -> None:
        """Export what is pending and stop the exporters Perdure started (if any)."""
        if self._provider is not None:
            self._provider.shutdown()


def trace_carrier(context: object | None = None) -> dict[str, str] | None:
    """The W3C trace context (traceparent, tracestate: never baggage) of ``context`` or the
    current one, as a dict to store; None without OpenTelemetry or without a valid span."""
    try:
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )
    except ImportError:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)  # type: ignore[arg-type]
    return carrier or None
