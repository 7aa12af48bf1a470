"""Turns the keyword arguments of ``list_workflows`` into a validated `WorkflowQuery`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from typing_extensions import TypedDict

from perdure.storage.records import WorkflowQuery
from perdure.storage.records import WorkflowStatusString as S

STATUSES = (
    S.PENDING,
    S.SUCCESS,
    S.ERROR,
    S.ENQUEUED,
    S.DELAYED,
    S.CANCELLED,
    S.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
)

TimeBound = str | datetime | int | None
OneOrMany = str | Sequence[str] | None


class QueuedWorkflowFilters(TypedDict, total=False):
    """Filters of ``list_queued_workflows``: those of `ListWorkflowFilters` but
    ``queues_only``, ``was_forked_from`` and ``schedule_name``, as in DBOS."""

    workflow_ids: Sequence[str] | None
    status: OneOrMany
    start_time: TimeBound
    end_time: TimeBound
    completed_after: TimeBound
    completed_before: TimeBound
    dequeued_after: TimeBound
    dequeued_before: TimeBound
    name: OneOrMany
    app_version: OneOrMany
    forked_from: OneOrMany
    parent_workflow_id: OneOrMany
    user: OneOrMany
    queue_name: OneOrMany
    limit: int | None
    offset: int | None
    sort_desc: bool
    workflow_id_prefix: OneOrMany
    load_input: bool
    load_output: bool
    executor_id: OneOrMany
    is_fork: bool | None
    has_parent: bool | None
    attributes: Mapping[str, Any] | None
    application_name: OneOrMany


class ListWorkflowFilters(QueuedWorkflowFilters, total=False):
    """Filters of ``list_workflows``, DBOS Transact's; each defaults to "any" and all must hold.

    Text filters (``status``, ``name``, ``app_version``, ``forked_from``,
    ``parent_workflow_id``, ``user``, ``queue_name``, ``workflow_id_prefix``, ``executor_id``,
    ``schedule_name``, ``application_name``) take one value or a list (any of them). Time
    bounds take an ISO 8601 string, a datetime or epoch ms, inclusive: ``start_time`` /
    ``end_time`` bound the creation, ``completed_after`` / ``completed_before`` the end (a
    workflow that has not ended has none), ``dequeued_after`` / ``dequeued_before`` the last
    dequeue. ``status`` may be ``"DELAYED"`` (enqueued with a delay not yet passed).
    ``queues_only`` keeps workflows on a queue; ``was_forked_from`` / ``is_fork`` /
    ``has_parent`` keep those of which a fork was made / that are forks / that are children
    (False: the opposite). ``sort_desc`` lists newest first. ``load_input`` /
    ``load_output`` False leave ``input`` / ``output`` and ``error`` None without reading
    them. Perdure records no application names (every workflow is unclaimed, which DBOS
    counts as belonging to every application), so ``application_name`` matches every
    workflow; ``attributes`` keeps the workflows having all the given key-value pairs.
    """

    queues_only: bool
    was_forked_from: bool | None
    schedule_name: OneOrMany


def epoch_ms(value: TimeBound, *, what: str) -> int | None:
    """A time bound as epoch milliseconds: an ISO 8601 string, a datetime, or epoch ms.

    Naive times are taken as UTC, the zone Perdure records times in.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{what} {value!r} is not an ISO 8601 time; use e.g. '2025-01-31T12:00:00Z'."
            ) from None
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be an ISO 8601 string, a datetime or epoch ms, not {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def one_or_many(value: OneOrMany, *, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else tuple(value)
    for item in values:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be a string or a list of strings, not {item!r}")
    return values


def _statuses(value: OneOrMany) -> tuple[str, ...] | None:
    statuses = one_or_many(value, what="status")
    if statuses is None:
        return None
    normalised = tuple(s.upper() for s in statuses)
    unknown = [s for s in normalised if s not in STATUSES]
    if unknown:
        raise ValueError(
            f"Unknown workflow status {unknown[0]!r}; use one of {', '.join(STATUSES)}."
        )
    return normalised


def non_negative(value: int | None, *, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def _flag(value: bool | None, *, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{what} must be True, False or None, not {value!r}")
    return value


def _attribute_pairs(attributes: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...] | None:
    """``attributes`` as (key, JSON value) pairs a listing matches all of (None or empty:
    no condition, as in DBOS)."""
    if not attributes:
        return None
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a dict, not {attributes!r}")
    try:
        return tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in attributes.items()))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"attributes must hold JSON values: {exc}") from exc


def workflow_query(
    *,
    workflow_ids: Sequence[str] | None = None,
    status: OneOrMany = None,
    start_time: TimeBound = None,
    end_time: TimeBound = None,
    completed_after: TimeBound = None,
    completed_before: TimeBound = None,
    dequeued_after: TimeBound = None,
    dequeued_before: TimeBound = None,
    name: OneOrMany = None,
    app_version: OneOrMany = None,
    forked_from: OneOrMany = None,
    parent_workflow_id: OneOrMany = None,
    user: OneOrMany = None,
    queue_name: OneOrMany = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    workflow_id_prefix: OneOrMany = None,
    load_input: bool = True,
    load_output: bool = True,
    executor_id: OneOrMany = None,
    queues_only: bool = False,
    was_forked_from: bool | None = None,
    is_fork: bool | None = None,
    has_parent: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
    schedule_name: OneOrMany = None,
    application_name: OneOrMany = None,
) -> WorkflowQuery:
    """The query `list_workflows` runs; raises ValueError/TypeError naming a bad argument.

    With ``queues_only`` and no ``status``, only unfinished workflows (ENQUEUED, DELAYED,
    PENDING) are kept; a ``status`` given replaces that default, as in DBOS.
    """
    one_or_many(application_name, what="application_name")  # checked; it matches every workflow
    return WorkflowQuery(
        workflow_ids=one_or_many(workflow_ids, what="workflow_ids"),
        statuses=_statuses(status),
        names=one_or_many(name, what="name"),
        app_versions=one_or_many(app_version, what="app_version"),
        users=one_or_many(user, what="user"),
        queue_names=one_or_many(queue_name, what="queue_name"),
        executor_ids=one_or_many(executor_id, what="executor_id"),
        forked_from=one_or_many(forked_from, what="forked_from"),
        parent_workflow_ids=one_or_many(parent_workflow_id, what="parent_workflow_id"),
        schedule_names=one_or_many(schedule_name, what="schedule_name"),
        attributes=_attribute_pairs(attributes),
        workflow_id_prefixes=one_or_many(workflow_id_prefix, what="workflow_id_prefix") or None,
        queued_only=bool(queues_only),
        was_forked_from=_flag(was_forked_from, what="was_forked_from"),
        is_fork=_flag(is_fork, what="is_fork"),
        has_parent=_flag(has_parent, what="has_parent"),
        created_from_ms=epoch_ms(start_time, what="start_time"),
        created_to_ms=epoch_ms(end_time, what="end_time"),
        completed_from_ms=epoch_ms(completed_after, what="completed_after"),
        completed_to_ms=epoch_ms(completed_before, what="completed_before"),
        dequeued_from_ms=epoch_ms(dequeued_after, what="dequeued_after"),
        dequeued_to_ms=epoch_ms(dequeued_before, what="dequeued_before"),
        limit=non_negative(limit, what="limit"),
        offset=non_negative(offset, what="offset"),
        newest_first=sort_desc,
        with_inputs=load_input,
        with_outputs=load_output,
    )


def queued_workflow_query(**filters: Any) -> WorkflowQuery:
    """The query of ``list_queued_workflows``: `workflow_query` on queues only.

    Raises:
        TypeError: A filter ``list_queued_workflows`` does not take (as in DBOS).
    """
    refused = sorted(set(filters) - QueuedWorkflowFilters.__optional_keys__)
    if refused:
        raise TypeError(
            f"list_queued_workflows() got an unexpected keyword argument {refused[0]!r}; "
            "use list_workflows for it."
        )
    return workflow_query(queues_only=True, **filters)
