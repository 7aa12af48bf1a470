"""Defining queues on both backends: run-time registration, persistence, listen_queues, and
bad input refused at the call with nothing written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perdure import DBOS, Queue, SetEnqueueOptions
from perdure.error import DBOSException
from tests.fixtures.app import make_config
from tests.integration.system_tables import relaunch, run_sql


def test_register_and_retrieve_a_queue(dbos: type[DBOS], db_url: str) -> None:
    registered = DBOS.register_queue(
        "runtime", global_concurrency=3, worker_concurrency=2, limiter={"limit": 5, "period": 2}
    )
    found = DBOS.retrieve_queue("runtime")
    assert found is not None
    assert (found.name, found.concurrency, found.worker_concurrency, found.limiter) == (
        "runtime",
        3,
        2,
        {"limit": 5, "period": 2.0},
    )
    assert DBOS.retrieve_queue("nowhere") is None
    # The same settings again is fine and returns the same queue.
    assert DBOS.register_queue("runtime", concurrency=3, worker_concurrency=2, limiter={
        "limit": 5, "period": 2
    }).concurrency == registered.concurrency  # fmt: skip
    rows = run_sql(db_url, "SELECT name, concurrency, rate_limit FROM {p}queues")
    assert [tuple(r) for r in rows] == [("runtime", 3, 5)]


def test_a_stored_queue_is_found_and_usable_by_another_launch(
    dbos: type[DBOS], db_url: str
) -> None:
    Queue("stored", concurrency=4)

    @DBOS.workflow()
    def flow(x: int) -> int:
        return x

    DBOS._queues.clear()  # this launch no longer defines it: as a process that never did
    relaunch(db_url)
    found = DBOS.retrieve_queue("stored")
    assert found is not None
    assert found.concurrency == 4
    handle = found.enqueue(flow, 5)
    assert handle.get_status().status == "ENQUEUED"  # not served here: not defined here
    Queue("stored", concurrency=4)  # defining it serves it, after launch too
    assert handle.get_result() == 5


@pytest.fixture
def configured(db_url: str) -> Iterator[type[DBOS]]:
    """Perdure configured on a fresh database, launched by the test itself."""
    DBOS(config=make_config(db_url))
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def test_listen_queues_restricts_what_this_process_serves(configured: type[DBOS]) -> None:
    served = Queue("served")
    ignored = Queue("ignored")
    DBOS.listen_queues([served])

    @DBOS.workflow()
    def flow(x: int) -> int:
        return x

    DBOS.launch()
    with pytest.raises(DBOSException, match=r"before DBOS\.launch"):
        DBOS.listen_queues(["ignored"])
    waiting = ignored.enqueue(flow, 1)
    assert served.enqueue(flow, 2).get_result() == 2
    assert served.enqueue(flow, 3).get_result() == 3
    assert waiting.get_status().status == "ENQUEUED"


def test_bad_input_is_refused_at_the_call(dbos: type[DBOS], db_url: str) -> None:
    plain = Queue("plain")
    Queue("parts", partition_queue=True)

    @DBOS.workflow()
    def flow() -> None:
        pass

    with pytest.raises(DBOSException, match="no such queue"):
        DBOS.enqueue_workflow("undefined", flow)
    with (
        pytest.raises(DBOSException, match="not partitioned"),
        SetEnqueueOptions(queue_partition_key="k"),
    ):
        plain.enqueue(flow)
    with pytest.raises(DBOSException, match="partitioned: enqueue inside"):
        DBOS.enqueue_workflow("parts", flow)
    with pytest.raises(ValueError, match="priority"):
        SetEnqueueOptions(priority=0)
    with pytest.raises(ValueError, match="delay_seconds"):
        SetEnqueueOptions(delay_seconds=-1)
    with pytest.raises(ValueError, match="exceeds concurrency"):
        Queue("inverted", concurrency=1, worker_concurrency=2)
    with pytest.raises(ValueError, match="'period' must be a positive"):
        DBOS.register_queue("no-period", limiter={"limit": 1, "period": 0})
    with pytest.raises(ValueError, match="disagree"):
        DBOS.register_queue("both", concurrency=1, global_concurrency=2)
    with pytest.raises(ValueError, match="already defined with other settings"):
        Queue("plain", concurrency=1)
    with pytest.raises(DBOSException, match="is not a workflow"):
        plain.enqueue(print)
    assert run_sql(db_url, "SELECT COUNT(*) FROM {p}workflow_status")[0][0] == 0
    assert DBOS.retrieve_queue("inverted") is None
    assert [r[0] for r in run_sql(db_url, "SELECT name FROM {p}queues ORDER BY name")] == [
        "parts",
        "plain",
    ]
