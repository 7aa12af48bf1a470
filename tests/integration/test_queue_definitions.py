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


def test_a_stored_queue_is_served_by_a_launch_that_does_not_declare_it(
    dbos: type[DBOS], db_url: str
) -> None:
    Queue("stored", concurrency=4)

    @DBOS.workflow()
    def flow(x: int) -> int:
        return x

    DBOS._queues.clear()  # this launch no longer declares it: as a process that never did
    relaunch(db_url)
    assert DBOS.retrieve_queue("stored") is not None
    assert [q.name for q in DBOS.list_queues()] == ["stored"]
    found = DBOS.retrieve_queue("stored")
    assert found is not None
    assert found.concurrency == 4
    # Served here as in DBOS: every launched process serves every stored queue.
    assert found.enqueue(flow, 5).get_result() == 5
    assert DBOS.enqueue_workflow("stored", flow, 6).get_result() == 6


def test_dbos_2_31_queue_keywords_are_honoured_or_refused(dbos: type[DBOS]) -> None:
    declared = Queue("declared", global_concurrency=2, partition_concurrency=1)
    assert (declared.global_concurrency, declared.partition_concurrency) == (2, 1)
    # A handle on the stored queue, declaring nothing (settings are read from the database).
    handle = Queue("declared", database_backed_queue=True)
    assert (handle.global_concurrency, handle.partition_queue) == (2, True)
    assert [q.name for q in DBOS.list_queues()] == ["declared"]
    with pytest.raises(DBOSException, match="client_system_database"):
        Queue("other", client_system_database=object())
    with pytest.raises(DBOSException, match="application_name"):
        Queue("other", application_name="another-app")
    assert [q.name for q in DBOS.list_queues(application_name=["any", "app"])] == ["declared"]
    with pytest.raises(TypeError, match="application_name"):
        DBOS.list_queues(application_name=3)  # type: ignore[arg-type]
    legacy = DBOS.register_queue(
        "legacy", concurrency=3, partition_queue=True, priority_enabled=True
    )
    assert (legacy.partition_concurrency, legacy.global_concurrency, legacy.priority_enabled) == (
        3, None, True,
    )  # fmt: skip


def test_queues_declared_before_launch_are_listed_then_stored(db_url: str) -> None:
    DBOS(config=make_config(db_url))
    try:
        Queue("early", concurrency=2)
        DBOS.register_queue("registered", worker_concurrency=1)
        assert [q.name for q in DBOS.list_queues()] == ["early", "registered"]
        found = DBOS.retrieve_queue("registered")
        assert found is not None
        assert found.worker_concurrency == 1
        DBOS.delete_queue("early")
        DBOS.launch()
        rows = run_sql(db_url, "SELECT name, worker_concurrency FROM {p}queues")
        assert [tuple(r) for r in rows] == [("registered", 1)]
    finally:
        DBOS.destroy(destroy_registry=True)


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
    with pytest.raises(ValueError, match="set only one of them"):
        DBOS.register_queue("both", concurrency=1, global_concurrency=1)
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


def test_an_enqueue_onto_an_undeclared_queue_waits_for_it(
    dbos: type[DBOS], caplog: pytest.LogCaptureFixture
) -> None:
    @DBOS.workflow()
    def echo(x: int) -> int:
        return x

    # As in DBOS 3.4: recorded ENQUEUED (with a warning); it runs once the queue is declared.
    handle = DBOS.enqueue_workflow("declared-later", echo, 7)
    assert "'declared-later' is not defined in this system database yet" in caplog.text
    assert handle.get_status().status == "ENQUEUED"
    DBOS.register_queue("declared-later", polling_interval_sec=0.1)
    assert handle.get_result() == 7
