"""`DBOSClient`'s schedules on both backends: managed from outside, run by the launched app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from perdure import DBOS, ClientScheduleInput, DBOSClient
from perdure.error import DBOSException
from perdure.queues.queue import INTERNAL_QUEUE_NAME
from perdure.scheduling.cron import tick_workflow_id
from tests.fixtures.app import wait_until
from tests.integration.system_tables import relaunch

UTC = timezone.utc
YEARLY = "0 0 1 1 *"


@pytest.fixture
def client(dbos: type[DBOS], db_url: str) -> Iterator[DBOSClient]:
    # On SQLite the app sees the client's enqueues by polling: make it poll often.
    relaunch(db_url, notification_listener_polling_interval_sec=0.05)
    opened = DBOSClient(db_url)
    yield opened
    opened.destroy()


def test_a_client_creates_lists_pauses_and_deletes_schedules(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    client.create_schedule(
        schedule_name="nightly", workflow_name="nightly_job", schedule="0 3 * * *",
        context={"k": 1}, cron_timezone="Europe/Paris", automatic_backfill=True,
    )  # fmt: skip
    shown = client.get_schedule("nightly")
    assert shown is not None
    assert (shown["workflow_name"], shown["context"], shown["cron_timezone"]) == (
        "nightly_job",
        {"k": 1},
        "Europe/Paris",
    )
    assert shown["automatic_backfill"] is True
    assert DBOS.get_schedule("nightly") == shown  # the app sees the same schedule
    with pytest.raises(DBOSException, match="'nightly': the name is already taken"):
        client.create_schedule(schedule_name="nightly", workflow_name="x", schedule=YEARLY)
    with pytest.raises(DBOSException, match="does not support application_name"):
        client.create_schedule(
            schedule_name="other", workflow_name="x", schedule=YEARLY, application_name="app"
        )
    client.pause_schedule("nightly")
    assert [s["schedule_name"] for s in client.list_schedules(status="PAUSED")] == ["nightly"]
    client.resume_schedule("nightly")
    assert client.list_schedules(status="PAUSED", application_name=["any"]) == []
    client.delete_schedule("nightly")
    assert client.get_schedule("nightly") is None
    for action in ("delete", "pause", "resume"):
        with pytest.raises(DBOSException, match=f"Cannot {action} schedule 'nightly'"):
            getattr(client, f"{action}_schedule")("nightly")


def test_a_clients_apply_trigger_and_backfill_run_in_the_app(
    dbos: type[DBOS], client: DBOSClient
) -> None:
    DBOS.register_queue("reports")

    @DBOS.dbos_class("Reports")
    class Reports:
        """A classmethod workflow, scheduled by its class's name."""

        @classmethod
        @DBOS.workflow(name="report")
        def report(cls, scheduled_time: datetime, context: Any) -> list[Any]:
            return [cls.__name__, scheduled_time.isoformat(), context]

    entries: list[ClientScheduleInput] = [
        {
            "schedule_name": "yearly",
            "workflow_name": "report",
            "workflow_class_name": "Reports",
            "schedule": YEARLY,
            "context": "ctx",
        },
        {
            "schedule_name": "queued",
            "workflow_name": "report",
            "workflow_class_name": "Reports",
            "schedule": YEARLY,
            "queue_name": "reports",
        },
    ]
    client.apply_schedules(entries)
    client.apply_schedules(entries)  # idempotent
    assert [s["schedule_name"] for s in client.list_schedules()] == ["queued", "yearly"]
    with pytest.raises(DBOSException, match="missing required field 'workflow_name'"):
        client.apply_schedules([{"schedule_name": "x", "schedule": YEARLY}])

    triggered = client.trigger_schedule("yearly")
    assert triggered.workflow_id.startswith("sched-yearly-trigger-")
    name, scheduled, context = triggered.get_result()
    assert (name, context) == ("Reports", "ctx")
    assert triggered.workflow_id == f"sched-yearly-trigger-{scheduled}"
    status = triggered.get_status()
    assert (status.queue_name, status.schedule_name) == (INTERNAL_QUEUE_NAME, "yearly")
    assert client.trigger_schedule("queued").get_status().queue_name == "reports"

    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)
    handles = client.backfill_schedule("queued", start, end)
    years = [datetime(y, 1, 1, tzinfo=UTC) for y in (2020, 2021)]
    assert [h.workflow_id for h in handles] == [tick_workflow_id("queued", t) for t in years]
    assert [h.get_result()[1] for h in handles] == [t.isoformat() for t in years]
    assert len(client.backfill_schedule("queued", start, end)) == 2  # the same runs
    wait_until(
        lambda: len(DBOS.list_workflows(workflow_id_prefix="sched-queued-2")) == 2,
        what="the backfilled runs",
    )
    with pytest.raises(DBOSException, match="Cannot trigger schedule 'ghost'"):
        client.trigger_schedule("ghost")


def test_async_twins(client: DBOSClient) -> None:
    async def main() -> list[str]:
        await client.create_schedule_async(schedule_name="a", workflow_name="wf", schedule=YEARLY)
        await client.apply_schedules_async(
            [{"schedule_name": "b", "workflow_name": "wf", "schedule": YEARLY}]
        )
        assert (await client.get_schedule_async("a")) is not None
        names = [s["schedule_name"] for s in await client.list_schedules_async()]
        await client.delete_schedule_async("a")
        return names

    assert asyncio.run(main()) == ["a", "b"]
    assert [s["schedule_name"] for s in client.list_schedules()] == ["b"]
