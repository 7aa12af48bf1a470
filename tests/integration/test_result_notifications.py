"""A result awaited from another process is delivered by a Postgres notification, not polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from perdure import DBOS
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import run_sql


@pytest.fixture
def slow_polling_dbos(postgres_url: str) -> Iterator[str]:
    """Postgres only: SQLite has no cross-process notifications (its waiters poll)."""
    DBOS(config=make_config(postgres_url, notification_listener_polling_interval_sec=30))
    DBOS.launch()
    yield postgres_url
    DBOS.destroy(destroy_registry=True)


@pytest.mark.single_backend(
    "postgres", reason="SQLite has no cross-process notifications: its waiters poll by design"
)
def test_get_result_wakes_on_the_end_notification(slow_polling_dbos: str) -> None:
    url = slow_polling_dbos

    @DBOS.workflow()
    def elsewhere() -> int:
        return 0

    # A workflow another process is running: only its row exists here.
    run_sql(
        url,
        "INSERT INTO {p}workflow_status (workflow_id, status, name, serialization, executor_id, "
        "instance_id, created_at, updated_at) VALUES ('remote', 'PENDING', :n, 'json', 'other', "
        "'other-instance', 1, 1)",
        n=elsewhere.__qualname__,
    )
    results: list[object] = []
    waiter = threading.Thread(
        target=lambda: results.append(DBOS.retrieve_workflow("remote").get_result())
    )
    waiter.start()
    wait_until(lambda: run_sql(url, "SELECT COUNT(*) FROM {p}result_waiters")[0][0] == 1)
    # Not synchronisation: let the waiter's re-checks back off past 2.5 s apart, so only a
    # notification can deliver the result within the bound asserted below.
    time.sleep(2.6)
    finished = time.monotonic()
    run_sql(
        url,
        "UPDATE {p}workflow_status SET status = 'SUCCESS', output = :o "
        "WHERE workflow_id = 'remote'",
        o=b"7",
    )
    waiter.join(10)
    assert results == [7]
    assert time.monotonic() - finished < 1.0
    assert run_sql(url, "SELECT COUNT(*) FROM {p}result_waiters")[0][0] == 0
