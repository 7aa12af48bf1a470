"""`EnqueueOptions`: enqueueing a workflow by name, from a client or from inside the app.

`DBOSClient.enqueue` and `DBOS.enqueue_workflow_with_options` check the same options and
build the same ENQUEUED row from them, so the process that runs the workflow cannot tell
them apart; inside the app, options left out fall back to the enclosing ``SetWorkflowID``,
``SetEnqueueOptions``, ``SetWorkflowTimeout``, ``SetWorkflowAttributes`` and identity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from typing_extensions import TypedDict

from perdure.clock import now_ms
from perdure.error import DBOSException
from perdure.execution.auth import current_auth
from perdure.execution.context import (
    REUSE_POLICIES,
    NextEnqueueOptions,
    NextWorkflowOptions,
    SetEnqueueOptions,
    WorkflowContext,
    check_attributes,
    take_enqueue_options,
    take_next_options,
)
from perdure.execution.tracing import OTEL_CARRIER_ATTRIBUTE, trace_carrier
from perdure.execution.workflow import WorkflowEngine
from perdure.logs import get_logger
from perdure.queues.queue import QueueSpec
from perdure.serialization import Payloads, check_serialization_type
from perdure.storage.records import (
    QueuePlacement,
    WorkflowRow,
    WorkflowStatusString,
    new_owner_token,
)

logger = get_logger(__name__)


class EnqueueOptions(TypedDict, total=False):
    """Options of `DBOSClient.enqueue` and `DBOS.enqueue_workflow_with_options`: which
    workflow, on which queue, and how.

    The keys of DBOS's ``EnqueueOptions``. Perdure honours all but the last group, which it
    refuses when set (rather than enqueue something other than asked): ``application_name``
    (one application per system database), ``shard_key`` (DBOS Cloud) and
    ``max_recovery_attempts`` (2.x: the limit is the workflow function's).
    ``otel_context`` puts the workflow on that OpenTelemetry context's trace, as
    `PropagateOtelContext` does.
    """

    workflow_name: str
    queue_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int
    queue_partition_key: str
    delay_seconds: float
    duplication_policy: str
    workflow_id_reuse_policy: str
    class_name: str
    instance_name: str
    authenticated_user: str
    serialization_type: Any
    application_name: str
    attributes: dict[str, Any]
    authenticated_roles: list[str]
    otel_context: Any
    shard_key: str
    max_recovery_attempts: int


_REFUSED_OPTIONS = ("application_name", "shard_key", "max_recovery_attempts")


def check_enqueue_options(options: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The workflow and queue names of ``options``, once every key is checked.

    Raises:
        DBOSException: A missing name, a key DBOS does not define, one Perdure cannot
            honour, or a value of the wrong kind; each named.
    """
    name, queue_name = options.get("workflow_name"), options.get("queue_name")
    if not isinstance(name, str) or not name or not isinstance(queue_name, str) or not queue_name:
        raise DBOSException(
            f"{where} needs options with 'workflow_name' and 'queue_name', e.g. "
            "{'workflow_name': 'process_order', 'queue_name': 'orders'}."
        )
    unknown = sorted(set(options) - set(EnqueueOptions.__annotations__))
    if unknown:
        raise DBOSException(
            f"{where}: unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(EnqueueOptions.__annotations__)}."
        )
    refused = [k for k in _REFUSED_OPTIONS if options.get(k) is not None]
    if refused:
        raise DBOSException(
            f"{where}: Perdure does not support the option(s) {', '.join(refused)} "
            "(see EnqueueOptions for why); remove them."
        )
    workflow_id = options.get("workflow_id")
    if workflow_id is not None and not isinstance(workflow_id, str):
        raise DBOSException(f"{where}: workflow_id must be a string, not {workflow_id!r}.")
    if options.get("workflow_id_reuse_policy") not in (None, *REUSE_POLICIES):
        raise DBOSException(
            f"{where}: workflow_id_reuse_policy must be one of "
            f"{', '.join(REUSE_POLICIES)}, not {options.get('workflow_id_reuse_policy')!r}."
        )
    timeout = options.get("workflow_timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise DBOSException(
            f"{where}: workflow_timeout must be a positive number of seconds, not {timeout!r}."
        )
    check_serialization_type(options.get("serialization_type"), where)
    check_attributes(options.get("attributes"), where)
    return name, queue_name


def enqueue_settings(
    options: Mapping[str, Any], ambient: NextEnqueueOptions | None = None
) -> NextEnqueueOptions:
    """The queue options of ``options``; each one left out (or None) is ``ambient``'s.

    Raises:
        ValueError: An invalid value, as `SetEnqueueOptions` refuses it.
    """
    fallback = ambient or NextEnqueueOptions()

    def pick(key: str) -> Any:
        value = options.get(key)
        return getattr(fallback, key) if value is None else value

    return SetEnqueueOptions(
        deduplication_id=pick("deduplication_id"),
        priority=pick("priority"),
        queue_partition_key=pick("queue_partition_key"),
        delay_seconds=pick("delay_seconds"),
        app_version=pick("app_version"),
        duplication_policy=pick("duplication_policy"),
    ).options


def placement_on(
    queue: QueueSpec | None, queue_name: str, workflow_name: str, given: NextEnqueueOptions
) -> QueuePlacement:
    """Where ``given`` puts a workflow on the queue stored as ``queue`` (checked against its
    settings), or on one no process declared yet (None: not an error, as in DBOS)."""
    if queue is not None:
        return queue.placement(given, now_ms=now_ms())
    # As in DBOS: the workflow waits ENQUEUED until a process declares the queue (with the
    # key it was given, if the queue turns out to be partitioned).
    logger.warning(
        "Queue %r is not defined in this system database yet: workflow %r waits ENQUEUED "
        "until a process declares the queue (Queue(...), register_queue).",
        queue_name,
        workflow_name,
    )
    key = given.queue_partition_key
    unchecked = given if key is None else replace(given, queue_partition_key=None)
    placement = QueueSpec.create(queue_name).placement(unchecked, now_ms=now_ms())
    return replace(placement, partition_key=key)


def queued_row(
    options: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    workflow_id: str,
    payloads: Payloads,
    executor_id: str,
    instance_id: str,
) -> WorkflowRow:
    """The row of the workflow ``options`` describe, before `QueuePlacement.place` puts it
    on its queue: no parent, and no application version unless the options give one."""
    name = str(options["workflow_name"])
    inputs = payloads.encode(
        {"args": args, "kwargs": kwargs},
        what=f"input of workflow {name!r}",
        workflow_id=workflow_id,
    )
    timeout = options.get("workflow_timeout")
    attributes = options.get("attributes")
    otel_context = options.get("otel_context")
    carrier = None if otel_context is None else trace_carrier(otel_context)
    if carrier is not None:
        attributes = {**(attributes or {}), OTEL_CARRIER_ATTRIBUTE: carrier}
    now = now_ms()
    return WorkflowRow(
        workflow_id=workflow_id,
        status=WorkflowStatusString.PENDING,
        name=name,
        class_name=options.get("class_name"),
        config_name=options.get("instance_name"),
        inputs=inputs,
        output=None,
        error=None,
        serialization=payloads.format,
        executor_id=executor_id,
        instance_id=instance_id,
        app_version=options.get("app_version") or "",
        queue_name=None,
        authenticated_user=options.get("authenticated_user"),
        authenticated_roles=_json_or_none(options.get("authenticated_roles")),
        attributes=_json_or_none(attributes),
        created_at=now,
        updated_at=now,
        recovery_attempts=1,
        workflow_timeout_ms=round(timeout * 1000) if timeout else None,
        workflow_deadline_epoch_ms=None,  # a queued workflow's timeout runs from dequeue
        parent_workflow_id=None,
        forked_from=None,
        deduplication_id=None,
        priority=0,
        owner_token=new_owner_token(),
    )


def enqueue_in_app(
    engine: WorkflowEngine,
    options: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    find_queue: Callable[[str], QueueSpec | None],
) -> str:
    """Record the workflow ``options`` describe ENQUEUED (`DBOS.enqueue_workflow_with_options`);
    its ID. Inside a workflow it is a child, enqueued once: a replay gets the recorded one.

    Raises:
        DBOSException: Invalid options (see `check_enqueue_options`), or options that do not
            fit the queue.
        DBOSQueueDeduplicatedError: Its deduplication ID is taken on the queue.
        DBOSWorkflowIDInUseError: The ID exists and the reuse policy is ``"reject"``.
    """
    name, queue_name = check_enqueue_options(options, "DBOS.enqueue_workflow_with_options")
    given = enqueue_settings(options, take_enqueue_options())
    placement = placement_on(find_queue(queue_name), queue_name, name, given)
    pending = take_next_options()
    workflow_id, policy = options.get("workflow_id"), options.get("workflow_id_reuse_policy")
    if not workflow_id:  # an enclosing SetWorkflowID's, with its policy unless one is given
        workflow_id, policy = pending.workflow_id, policy or pending.reuse_policy
    resolved = replace(pending, workflow_id=workflow_id, reuse_policy=policy)
    build = _InAppRow(engine, options, args, kwargs)
    return engine.start_row(name, build, resolved, queued=placement).workflow_id


@dataclass(frozen=True)
class _InAppRow:
    """Builds the row of `enqueue_in_app`: `queued_row`, with what the options leave out
    taken from the caller's context: its identity (unless they give a user or roles), its
    `SetWorkflowTimeout` (else the parent's deadline) and attributes (the options' win key
    by key)."""

    engine: WorkflowEngine
    options: Mapping[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __call__(
        self, workflow_id: str, parent: WorkflowContext | None, pending: NextWorkflowOptions
    ) -> WorkflowRow:
        options, engine, auth = self.options, self.engine, current_auth()
        resolved = dict(options)
        own_identity = any(
            options.get(k) is not None for k in ("authenticated_user", "authenticated_roles")
        )
        if not own_identity:
            resolved["authenticated_user"] = auth.user
            resolved["authenticated_roles"] = None if auth.roles is None else list(auth.roles)
        if pending.attributes:
            resolved["attributes"] = {**pending.attributes, **(options.get("attributes") or {})}
        own_timeout = options.get("workflow_timeout") is not None
        if not own_timeout and pending.has_timeout:
            resolved["workflow_timeout"] = pending.timeout_seconds
        row = queued_row(
            resolved, self.args, self.kwargs, workflow_id=workflow_id, payloads=engine.payloads,
            executor_id=engine.executor_id, instance_id=engine.instance_id,
        )  # fmt: skip
        inherits = not own_timeout and not pending.has_timeout and parent is not None
        return replace(
            row,
            parent_workflow_id=None if parent is None else parent.workflow_id,
            workflow_deadline_epoch_ms=parent.deadline_epoch_ms if inherits and parent else None,
            assumed_role=None if own_identity else auth.assumed_role,
        )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
