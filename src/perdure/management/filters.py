"""Turns the keyword arguments of ``list_workflows`` into a validated `WorkflowQuery`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

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
QUEUED_STATUSES = (S.ENQUEUED, S.DELAYED, S.PENDING)

TimeBound = str | datetime | int | None
OneOrMany = str | Sequence[str] | None


class QueuedWorkflowFilters(TypedDict, total=False):
    """Filters of ``list_queued_workflows``; each defaults to "any" (see `ListWorkflowFilters`)."""

    queue_name: OneOrMany
    status: OneOrMany
    start_time: TimeBound
    end_time: TimeBound
    name: OneOrMany
    limit: int | None
    offset: int | None
    sort_desc: bool
    load_input: bool


class ListWorkflowFilters(QueuedWorkflowFilters, total=False):
    """Filters of ``list_workflows``; each defaults to "any".

    ``status``, ``name``, ``app_version``, ``user`` and ``queue_name`` take one value or a
    list; ``start_time`` / ``end_time`` bound the creation time (ISO 8601 string, datetime or
    epoch ms; inclusive); ``sort_desc`` lists newest first; ``load_input`` / ``load_output``
    False leave ``input`` / ``output`` and ``error`` None without reading them.
    """

    workflow_ids: Sequence[str] | None
    app_version: OneOrMany
    user: OneOrMany
    workflow_id_prefix: str | None
    load_output: bool


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


def _many(value: OneOrMany, *, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else tuple(value)
    for item in values:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be a string or a list of strings, not {item!r}")
    return values


def _statuses(value: OneOrMany) -> tuple[str, ...] | None:
    statuses = _many(value, what="status")
    if statuses is None:
        return None
    normalised = tuple(s.upper() for s in statuses)
    unknown = [s for s in normalised if s not in STATUSES]
    if unknown:
        raise ValueError(
            f"Unknown workflow status {unknown[0]!r}; use one of {', '.join(STATUSES)}."
        )
    return normalised


def _count(value: int | None, *, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def workflow_query(
    *,
    workflow_ids: Sequence[str] | None = None,
    status: OneOrMany = None,
    start_time: TimeBound = None,
    end_time: TimeBound = None,
    name: OneOrMany = None,
    app_version: OneOrMany = None,
    user: OneOrMany = None,
    queue_name: OneOrMany = None,
    workflow_id_prefix: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    load_input: bool = True,
    load_output: bool = True,
    queued_only: bool = False,
) -> WorkflowQuery:
    """The query `list_workflows` runs; raises ValueError/TypeError naming a bad argument."""
    statuses = _statuses(status)
    if queued_only and statuses is not None:  # the queued condition itself covers the rest
        statuses = tuple(s for s in statuses if s in QUEUED_STATUSES)
    return WorkflowQuery(
        workflow_ids=_many(workflow_ids, what="workflow_ids"),
        statuses=statuses,
        names=_many(name, what="name"),
        app_versions=_many(app_version, what="app_version"),
        users=_many(user, what="user"),
        queue_names=_many(queue_name, what="queue_name"),
        queued_only=queued_only,
        workflow_id_prefix=workflow_id_prefix or None,
        created_from_ms=epoch_ms(start_time, what="start_time"),
        created_to_ms=epoch_ms(end_time, what="end_time"),
        limit=_count(limit, what="limit"),
        offset=_count(offset, what="offset"),
        newest_first=sort_desc,
        with_inputs=load_input,
        with_outputs=load_output,
    )
