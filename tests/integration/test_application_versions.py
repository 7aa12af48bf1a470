"""Application versions on both backends: registered at launch, the latest one chosen by
registration or by hand, and what the latest version alone does."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import pytest

from perdure import DBOS, DBOSClient
from perdure.error import DBOSException
from perdure.scheduling.cron import Cron, tick_workflow_id
from tests.fixtures.app import wait_until
from tests.integration.system_tables import relaunch, run_sql

UTC = timezone.utc


def version_names() -> list[str]:
    return [v["version_name"] for v in DBOS.list_application_versions()]


def test_each_launch_registers_its_version_and_the_newest_is_the_latest(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    [unversioned] = DBOS.list_application_versions()
    assert set(unversioned) == {
        "version_id", "version_name", "version_timestamp", "created_at", "application_name",
    }  # fmt: skip
    assert (unversioned["version_name"], unversioned["application_name"]) == ("", None)
    assert DBOS.get_latest_application_version() == unversioned

    relaunch(db_url, application_version="v2")
    assert version_names() == ["v2", ""]
    with caplog.at_level(logging.WARNING, logger="perdure"):
        relaunch(db_url, application_version="")  # an older version comes back: not the latest
    assert "'' is not the latest version ('v2' is)" in caplog.text
    assert DBOS.get_latest_application_version()["version_name"] == "v2"

    DBOS.set_latest_application_version("")  # a rollback
    assert version_names() == ["", "v2"]
    latest = DBOS.get_latest_application_version()
    assert latest["created_at"] == unversioned["created_at"]
    assert latest["version_timestamp"] > unversioned["version_timestamp"]
    with pytest.raises(DBOSException, match="'ghost' the latest application version: it is not"):
        DBOS.set_latest_application_version("ghost")
    with pytest.raises(DBOSException, match="application_name is not supported"):
        DBOS.set_latest_application_version("v2", application_name="other-app")

    async def twins() -> list[str]:
        await DBOS.set_latest_application_version_async("v2")
        latest = await DBOS.get_latest_application_version_async()
        assert latest["version_name"] == "v2"
        return [v["version_name"] for v in await DBOS.list_application_versions_async()]

    assert asyncio.run(twins()) == ["v2", ""]


def test_the_latest_version_alone_starts_schedule_ticks(
    dbos: type[DBOS], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.workflow(name="yearly_job")
    def yearly_job(scheduled_time: datetime, context: Any) -> None:
        pass

    DBOS.create_schedule(
        schedule_name="yearly", workflow_fn=yearly_job, schedule="0 0 1 1 *",
        automatic_backfill=True,
    )  # fmt: skip
    relaunch(db_url, application_version="v1")
    relaunch(db_url, application_version="v2")  # the newest: the latest
    DBOS.destroy()
    last = datetime(2021, 1, 1, tzinfo=UTC)
    run_sql(
        db_url,
        "UPDATE {p}schedules SET last_fired_at = :t WHERE schedule_name = 'yearly'",
        t=round(last.timestamp() * 1000),
    )
    with caplog.at_level(logging.INFO, logger="perdure"):
        relaunch(db_url, application_version="v1")
        # The first scheduler pass of this v1 process leaves the missed ticks to v2.
        wait_until(
            lambda: "leaves schedule ticks to processes of the latest version" in caplog.text,
            what="the scheduler to see that v1 is not the latest",
        )
    assert DBOS.list_workflows(name="yearly_job") == []

    DBOS.set_latest_application_version("v1")
    missed = [tick_workflow_id("yearly", t) for t in Cron("0 0 1 1 *").ticks(last, _now())][1:]
    wait_until(
        lambda: len(DBOS.list_workflows(workflow_ids=missed, status="SUCCESS")) == len(missed),
        what="the v1 process to start the missed ticks",
    )
    assert {w.app_version for w in DBOS.list_workflows(name="yearly_job")} == {"v1"}


def test_the_latest_version_alone_dequeues_unversioned_workflows(
    dbos: type[DBOS], db_url: str
) -> None:
    queue = DBOS.register_queue("jobs")

    @DBOS.workflow(name="job")
    def job() -> str:
        return DBOS.application_version

    relaunch(db_url, application_version="v1", notification_listener_polling_interval_sec=0.05)
    client = DBOSClient(db_url)
    try:
        handle = client.enqueue({"workflow_name": "job", "queue_name": queue.name})
        assert handle.get_result() == "v1"  # v1 is the latest: it takes it and its version
        assert client.get_latest_application_version()["version_name"] == "v1"
        assert [v["version_name"] for v in client.list_application_versions()] == ["v1", ""]
        # The process of "" (not the latest) leaves unversioned work alone until it is.
        relaunch(db_url, application_version="", notification_listener_polling_interval_sec=0.05)
        client.set_latest_application_version("")
        again = client.enqueue({"workflow_name": "job", "queue_name": queue.name})
        assert again.get_result() == ""
        assert again.get_status().app_version == ""
        with pytest.raises(DBOSException, match="not registered"):
            client.set_latest_application_version("v9")

        async def twins() -> str:
            await client.set_latest_application_version_async("v1")
            listed = await client.list_application_versions_async()
            assert listed[0]["version_name"] == "v1"
            return (await client.get_latest_application_version_async())["version_name"]

        assert asyncio.run(twins()) == "v1"
    finally:
        client.destroy()


def _now() -> datetime:
    return datetime.now(UTC)
