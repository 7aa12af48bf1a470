"""OpenTelemetry spans for each workflow execution and each step, when ``enable_otlp`` is set.

OpenTelemetry is an optional extra (``pip install 'perdure[otel]'``): it is imported only when
tracing is enabled. Without ``otlp_traces_endpoints`` the spans go to the application's global
tracer provider (one it configured itself); with them, to a provider of Perdure's own that
exports over OTLP/HTTP to each endpoint. `DBOSTracer` (``DBOS.tracer``) lets application code
start spans of its own on the same tracer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from perdure.error import DBOSException, DBOSInitializationError

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

    @property
    def tracer(self) -> Any:
        """The OpenTelemetry tracer that makes Perdure's spans."""
        return self._tracer

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


@dataclass(frozen=True)
class TracerScope:
    """What `DBOSTracer` starts spans with: the launched instance's `Tracing` (None: before
    launch, or without ``enable_otlp``), and the attributes every span it starts carries;
    ``enabled``: whether the configuration sets ``enable_otlp``."""

    tracing: Tracing | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = False


class DBOSTracer:
    """``DBOS.tracer``: DBOS's tracer interface, for spans of the application's own.

    Its spans come from Perdure's tracer: the provider exporting to
    ``otlp_traces_endpoints`` when configured, else OpenTelemetry's global provider (spans
    that record nothing if the application set none). Each carries ``perdure.executor_id``
    and ``perdure.app_version``. Without the OpenTelemetry packages there is no span to
    return: `start_span` raises and `get_current_span` returns None.

    Attributes:
        app_id: DBOS Cloud's application ID: always None under Perdure.
        otel_attribute_format: ``"legacy"``: attributes are recorded under the names given.
    """

    app_id: str | None = None
    otel_attribute_format: Literal["legacy", "semconv"] = "legacy"

    def __init__(self, scope: Callable[[], TracerScope]) -> None:
        self._scope = scope

    @property
    def disable_otlp(self) -> bool:
        """Whether Perdure traces its workflows and steps (config key ``enable_otlp``)."""
        return not self._scope().enabled

    @property
    def otlp_attributes(self) -> dict[str, str]:
        """Attributes DBOS adds to every span: none (Perdure ignores ``otlp_attributes``)."""
        return {}

    def config(self, config: Mapping[str, Any]) -> None:
        """Refused: Perdure configures tracing once, from ``DBOS(config=...)``.

        Raises:
            DBOSException: Always, naming the config keys to set instead.
        """
        del config
        raise DBOSException(
            "DBOS.tracer.config() is not supported: Perdure configures tracing from "
            "DBOS(config=...); set 'enable_otlp' (and 'otlp_traces_endpoints') there."
        )

    def start_span(self, attributes: Mapping[str, Any], parent: Any | None = None) -> Any:
        """Start (not enter) a span named ``attributes["name"]``; end it with `end_span`.

        Args:
            attributes: ``name``, and the span's attributes: those of type str, bool, int
                or float are recorded, under the names given; others are left out.
            parent: The span to start it under (default: the current span, if any).

        Raises:
            DBOSException: No ``name``, or the OpenTelemetry packages are not installed.
        """
        name = attributes.get("name")
        if not isinstance(name, str) or not name:
            raise DBOSException(
                f"DBOS.tracer.start_span needs attributes with a 'name' string, got {name!r}."
            )
        try:
            from opentelemetry import trace  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise DBOSException(
                f"DBOS.tracer.start_span needs the OpenTelemetry packages: {_INSTALL}."
            ) from exc
        scope = self._scope()
        tracer = trace.get_tracer(TRACER_NAME) if scope.tracing is None else scope.tracing.tracer
        context = None if parent is None else trace.set_span_in_context(parent)
        span = tracer.start_span(name, context=context)
        for key, value in {**attributes, **scope.attributes}.items():
            if key != "name" and isinstance(value, (str, bool, int, float)):
                span.set_attribute(key, value)
        return span

    def end_span(self, span: Any) -> None:
        """End a span `start_span` started."""
        span.end()

    def get_current_span(self) -> Any | None:
        """The current OpenTelemetry span (perhaps not one of Perdure's), or None if there
        is none or OpenTelemetry is not installed."""
        try:
            from opentelemetry import trace  # noqa: PLC0415 - an optional extra
        except ImportError:
            return None  # without OpenTelemetry no span can be current
        span = trace.get_current_span()
        return span if span.get_span_context().is_valid else None
