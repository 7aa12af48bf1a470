"""Run-time schedules as the public API takes and shows them: `ScheduleInput` and
`ClientScheduleInput` checked into stored records, and records shown as `WorkflowSchedule`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone, tzinfo
from typing import Any

from typing_extensions import TypedDict

from perdure.clock import now_ms
from perdure.error import DBOSException
from perdure.scheduling.cron import Cron, zone_of
from perdure.serialization import Payloads
from perdure.storage.records import ScheduleRecord

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"


class WorkflowSchedule(TypedDict):
    """A run-time schedule, as ``DBOS.list_schedules`` returns it (DBOS Transact's keys).

    ``last_fired_at`` is the ISO time of the latest tick started (None before the first).
    Perdure keeps one application per system database and has no shards, so
    ``application_name`` and ``shard_key`` are always None. ``created_at`` (epoch ms) is
    Perdure's own.
    """

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str  # the cron expression
    status: str  # "ACTIVE" or "PAUSED"
    context: Any
    last_fired_at: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    application_name: str | None
    shard_key: str | None
    created_at: int  # epoch ms


class ScheduleInput(TypedDict, total=False):
    """One schedule of ``DBOS.apply_schedules``: the arguments of ``DBOS.create_schedule``.

    ``schedule_name``, ``workflow_fn`` and ``schedule`` are required.
    """

    schedule_name: str
    workflow_fn: Callable[..., Any]
    schedule: str
    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    shard_key: str | None


class ClientScheduleInput(TypedDict, total=False):
    """One schedule of ``DBOSClient.apply_schedules``: the workflow is named, not passed.

    ``schedule_name``, ``workflow_name`` and ``schedule`` are required;
    ``workflow_class_name`` names the class of a classmethod or static method workflow.
    """

    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    application_name: str | None
    shard_key: str | None


def schedule_record(
    payloads: Payloads,
    *,
    schedule_name: str,
    workflow_name: str,
    workflow_class_name: str | None,
    schedule: str,
    context: Any,
    automatic_backfill: bool,
    cron_timezone: str | None,
    queue_name: str | None,
) -> ScheduleRecord:
    """A new schedule's record, its cron expression, time zone and context checked.

    Raises:
        DBOSException: A bad name, cron expression, time zone, flag or queue name; or a
            context the serializer cannot encode (`DBOSSerializationError`).
    """
    if not isinstance(schedule_name, str) or not schedule_name:
        raise DBOSException(f"A schedule needs a non-empty string name, got {schedule_name!r}.")
    cron = Cron.parse(schedule, schedule_name=schedule_name, cron_timezone=cron_timezone)
    if not isinstance(automatic_backfill, bool):
        raise DBOSException(
            f"Schedule {schedule_name!r}: automatic_backfill must be True or False, not "
            f"{automatic_backfill!r}."
        )
    if queue_name is not None and (not isinstance(queue_name, str) or not queue_name):
        raise DBOSException(
            f"Schedule {schedule_name!r}: queue_name must be a queue's name or None (runs "
            f"started directly), not {queue_name!r}."
        )
    return ScheduleRecord(
        schedule_name=schedule_name,
        workflow_name=workflow_name,
        workflow_class_name=workflow_class_name,
        schedule=cron.expression,
        context=payloads.encode(context, what=f"context of schedule {schedule_name!r}"),
        serialization=payloads.format,
        paused=False,
        created_at=now_ms(),
        schedule_id=str(uuid.uuid4()),
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,
        queue_name=queue_name,
    )


def check_entry(entry: Mapping[str, Any], index: int, required: Sequence[str]) -> None:
    """Refuse an entry of ``apply_schedules`` missing a required key, as DBOS does."""
    if not isinstance(entry, Mapping):
        raise DBOSException(f"Schedule entry {index} must be a dict, not {entry!r}.")
    for key in required:
        if key not in entry:
            raise DBOSException(f"Schedule entry {index} is missing required field {key!r}.")


def refuse_unsupported(where: str, **options: object) -> None:
    """Refuse DBOS options Perdure cannot honour when set (rather than ignore them)."""
    refused = [name for name, value in options.items() if value is not None]
    if refused:
        raise DBOSException(
            f"{where}: Perdure does not support {', '.join(refused)} (one application per "
            "system database, no shards); remove it."
        )


def check_unique_names(names: Iterable[str]) -> None:
    """Refuse a list of schedules naming one schedule twice: which one would win is unclear."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DBOSException(
                f"apply_schedules: schedule {name!r} appears twice; give each schedule once."
            )
        seen.add(name)


def _zone_of(record: ScheduleRecord) -> tzinfo:
    """The time zone a schedule's times are shown in: its cron time zone, else UTC."""
    if not record.cron_timezone:
        return timezone.utc
    return zone_of(record.cron_timezone, schedule_name=record.schedule_name)


def public_schedule(payloads: Payloads, record: ScheduleRecord) -> WorkflowSchedule:
    """``record`` as the API shows it, its context decoded."""
    context = payloads.decode(
        record.context, record.serialization, what=f"context of schedule {record.schedule_name!r}"
    )
    fired = record.last_fired_at
    return WorkflowSchedule(
        schedule_id=record.schedule_id,
        schedule_name=record.schedule_name,
        workflow_name=record.workflow_name,
        workflow_class_name=record.workflow_class_name,
        schedule=record.schedule,
        status=PAUSED if record.paused else ACTIVE,
        context=context,
        last_fired_at=(
            datetime.fromtimestamp(fired / 1000, tz=_zone_of(record)).isoformat()
            if fired is not None
            else None
        ),
        automatic_backfill=record.automatic_backfill,
        cron_timezone=record.cron_timezone,
        queue_name=record.queue_name,
        application_name=None,
        shard_key=None,
        created_at=record.created_at,
    )


OneOrMany = str | Iterable[str] | None


def matching(
    records: Iterable[ScheduleRecord],
    *,
    status: OneOrMany = None,
    workflow_name: OneOrMany = None,
    schedule_name_prefix: OneOrMany = None,
) -> list[ScheduleRecord]:
    """The records passing every filter given (each: one value or several, any of them)."""
    statuses, workflows = one_or_many(status), one_or_many(workflow_name)
    prefixes = one_or_many(schedule_name_prefix)
    return [
        r
        for r in records
        if (statuses is None or (PAUSED if r.paused else ACTIVE) in statuses)
        and (workflows is None or r.workflow_name in workflows)
        and (prefixes is None or r.schedule_name.startswith(prefixes))
    ]


def one_or_many(value: OneOrMany) -> tuple[str, ...] | None:
    """A filter's values: None (no filter), or a tuple of one or more."""
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)
