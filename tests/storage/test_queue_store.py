"""Queue definitions and claims of ready queued workflows under the stored limits."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from perdure.clock import now_ms
from perdure.queues.limits import admissible
from perdure.queues.queue import QueueSpec
from perdure.storage import Store, open_store
from perdure.storage.records import (
    Occupancy,
    QueueClaim,
    QueueRecord,
    Unrecorded,
    WorkflowRow,
    new_owner_token,
)
from tests.storage.store_helpers import S, start, step_row

PLAIN = QueueRecord(
    name="q", concurrency=None, worker_concurrency=None, rate_limit=None, rate_period_sec=None,
    priority_enabled=False, partition_queue=False, polling_interval_sec=1.0,
)  # fmt: skip


def queue(**limits: Any) -> QueueRecord:
    """Queue ``q`` with ``limits``."""
    return replace(PLAIN, **limits)


def enqueue(store: Store, workflow_id: str, **fields: Any) -> int:
    """An ENQUEUED workflow on queue ``q`` (unless told otherwise); its enqueue token."""
    return start(store, workflow_id, **{"status": S.ENQUEUED, "queue_name": "q", **fields})


class Admit:
    """The dequeue loop's decision: the limits of the definition read, applied to occupancy."""

    def __init__(self) -> None:
        self.seen: list[tuple[QueueRecord, Occupancy]] = []

    def __call__(self, record: QueueRecord, occupancy: Occupancy) -> int:
        self.seen.append((record, occupancy))
        limits = QueueSpec.from_record(record).limits
        return admissible(limits, occupancy, now_ms=occupancy.now_ms, batch=1_000)


def take(
    store: Store,
    *,
    default: QueueRecord = PLAIN,
    instance_id: str = "me",
    batch: int = 100,
    names: tuple[str, ...] = ("wf",),
    app_version: str = "",
    admit: Admit | None = None,
) -> list[WorkflowRow]:
    """Claim ready workflows of ``default``'s queue for one process, under a fresh token."""
    request = QueueClaim(
        default=default, executor_id="local", instance_id=instance_id, token=new_owner_token(),
        names=names, app_version=app_version, batch=batch,
    )  # fmt: skip
    claimed = store.claim_queued(request, admit or Admit())
    for row in claimed:
        assert (row.status, row.owner_token, row.instance_id) == (
            S.PENDING, request.token, instance_id,
        )  # fmt: skip
    return claimed


def _ids(rows: list[WorkflowRow]) -> list[str]:
    return [r.workflow_id for r in rows]


def _finish(store: Store, rows: list[WorkflowRow]) -> None:
    for row in rows:
        assert store.finish_workflow(row.workflow_id, row.owner_token, status=S.SUCCESS) is None


# -- what is claimed, in which order -------------------------------------------------------------


def test_a_claim_takes_ready_workflows_by_priority_then_age(store: Store) -> None:
    enqueue(store, "late-urgent", created_at=30, priority=1)
    enqueue(store, "early", created_at=10, priority=5)
    enqueue(store, "early-urgent", created_at=20, priority=1)
    enqueue(store, "later", created_at=40, priority=5)
    assert _ids(take(store, batch=1)) == ["early-urgent"]
    assert _ids(take(store, batch=10)) == ["late-urgent", "early", "later"]
    assert take(store) == []


def test_a_claim_takes_only_workflows_this_process_can_run_at_most_its_batch(
    store: Store,
) -> None:
    enqueue(store, "other-name", name="elsewhere")
    enqueue(store, "other-version", app_version="v1")
    enqueue(store, "other-queue", queue_name="r")
    for n in range(4):
        enqueue(store, f"w{n}", created_at=n, app_version="v2" if n % 2 else "")
    first = take(store, batch=3, app_version="v2", names=("wf", "x"))
    assert _ids(first) == ["w0", "w1", "w2"]
    assert {r.app_version for r in first} == {"v2"}  # an unversioned one takes the claimant's
    assert _ids(take(store, app_version="v2")) == ["w3"]
    assert take(store, app_version="v2", names=()) == []
    assert take(store, batch=0, names=("elsewhere",)) == []


def test_a_claim_starts_the_timeout_and_fences_off_the_enqueuer(store: Store) -> None:
    enqueuer = enqueue(store, "w", workflow_timeout_ms=5_000)
    admit = Admit()
    before = now_ms()
    [row] = take(store, admit=admit)
    [(_, occupancy)] = admit.seen
    # Stamped by the database's clock, the one the claim read (and rate limits count).
    assert row.dequeued_at_epoch_ms is not None
    assert abs(row.dequeued_at_epoch_ms - occupancy.now_ms) < 1_000
    assert abs(row.dequeued_at_epoch_ms - before) < 60_000
    assert row.workflow_deadline_epoch_ms == row.dequeued_at_epoch_ms + 5_000
    assert store.get_workflow("w") == row
    assert store.record_step(step_row("w", 0, enqueuer)) == Unrecorded.LOST
    assert store.record_step(step_row("w", 0, row.owner_token)) is None


def test_a_delayed_workflow_waits_for_its_time(store: Store) -> None:
    later = now_ms() + 3_600_000
    enqueue(store, "later", not_before_epoch_ms=later, created_at=1)
    enqueue(store, "much-later", not_before_epoch_ms=later + 1_000, created_at=2)
    enqueue(store, "due", not_before_epoch_ms=now_ms() - 1_000, created_at=3)
    now = now_ms()
    assert store.next_ready_at("q", now) == later
    assert _ids(take(store)) == ["due"]
    assert store.next_ready_at("q", now) == later
    assert store.next_ready_at("q", later) == later + 1_000  # after the time a claim judged by
    assert store.next_ready_at("r", now) is None


# -- limits ----------------------------------------------------------------------------------------


def test_the_stored_definition_wins_over_the_claimants_default(store: Store) -> None:
    stored = queue(concurrency=1)
    store.save_queue(stored)
    for n in range(3):
        enqueue(store, f"w{n}", created_at=n)
        enqueue(store, f"r{n}", created_at=n, queue_name="r")
    admit = Admit()
    assert _ids(take(store, default=queue(concurrency=5), admit=admit)) == ["w0"]
    assert admit.seen[0][0] == stored
    # A queue with nothing stored runs under the claimant's default.
    unstored = queue(name="r", concurrency=2)
    assert _ids(take(store, default=unstored, admit=admit)) == ["r0", "r1"]
    assert admit.seen[1][0] == unstored


def test_concurrency_counts_running_workflows_of_every_process(store: Store) -> None:
    store.save_queue(queue(concurrency=2))
    for n in range(5):
        enqueue(store, f"w{n}", created_at=n)
    admit = Admit()
    running = take(store, instance_id="a", admit=admit)
    assert _ids(running) == ["w0", "w1"]
    assert take(store, instance_id="b", admit=admit) == []
    assert (admit.seen[-1][1].running, admit.seen[-1][1].running_here) == (2, 0)
    _finish(store, running[:1])
    assert _ids(take(store, instance_id="b")) == ["w2"]


def test_worker_concurrency_counts_this_processs_running_workflows(store: Store) -> None:
    store.save_queue(queue(worker_concurrency=1))
    for n in range(4):
        enqueue(store, f"w{n}", created_at=n)
    admit = Admit()
    mine = take(store, instance_id="a", admit=admit)
    assert _ids(mine) == ["w0"]
    assert _ids(take(store, instance_id="b", admit=admit)) == ["w1"]
    assert take(store, instance_id="a", admit=admit) == []
    assert (admit.seen[-1][1].running, admit.seen[-1][1].running_here) == (2, 1)
    _finish(store, mine)
    assert _ids(take(store, instance_id="a")) == ["w2"]


def test_a_rate_limit_counts_recent_starts_even_when_finished(store: Store) -> None:
    store.save_queue(queue(rate_limit=2, rate_period_sec=3600.0))
    for n in range(3):
        enqueue(store, f"w{n}", created_at=n)
    started = take(store)
    assert _ids(started) == ["w0", "w1"]
    _finish(store, started)
    admit = Admit()
    assert take(store, admit=admit) == []
    [(_, occupancy)] = admit.seen
    assert occupancy.recent_starts_ms == tuple(r.dequeued_at_epoch_ms for r in started)


def test_partitions_are_limited_one_by_one(store: Store) -> None:
    store.save_queue(queue(concurrency=1, partition_queue=True))
    enqueue(store, "a1", queue_partition_key="a", created_at=1)
    enqueue(store, "a2", queue_partition_key="a", created_at=2)
    enqueue(store, "b1", queue_partition_key="b", created_at=3)
    admit = Admit()
    first = take(store, admit=admit)
    assert sorted(_ids(first)) == ["a1", "b1"]
    assert [o.partition_key for _, o in admit.seen] == ["a", "b"]
    assert take(store) == []
    _finish(store, [r for r in first if r.workflow_id == "a1"])
    assert _ids(take(store)) == ["a2"]


def test_partition_limits_hold_per_partition_and_the_others_over_the_queue(
    store: Store,
) -> None:
    # DBOS 3.4: two at once in the whole queue, one at once in each partition.
    store.save_queue(queue(concurrency=2, partition_queue=True, partition_concurrency=1))
    for n, key in enumerate("aabbc"):
        enqueue(store, f"{key}{n}", queue_partition_key=key, created_at=n)
    first = take(store, instance_id="x")
    assert _ids(first) == ["a0", "b2"]  # the partitions whose oldest waited longest
    assert take(store, instance_id="y") == []  # the whole queue is full
    _finish(store, first[:1])
    assert _ids(take(store, instance_id="y")) == ["a1"]  # a's turn again: it waited longest
    assert take(store) == []


def test_worker_limits_hold_per_partition_and_over_the_queue(store: Store) -> None:
    store.save_queue(
        queue(worker_concurrency=3, partition_queue=True, partition_worker_concurrency=2)
    )
    for n in range(4):
        for key in "ab":
            enqueue(store, f"{key}{n}", queue_partition_key=key, created_at=n)
    mine = take(store, instance_id="x")
    assert sorted(_ids(mine)) == ["a0", "a1", "b0"]  # two of a, then the worker is full
    # Another worker has its own limits; b's oldest waited longest, so b goes first.
    assert sorted(_ids(take(store, instance_id="y"))) == ["a2", "b1", "b2"]
    assert take(store, instance_id="x") == []
    _finish(store, [r for r in mine if r.workflow_id == "a0"])
    assert _ids(take(store, instance_id="x")) == ["a3"]  # one slot: x runs a1 and b0


def test_a_rate_limit_over_the_queue_counts_every_partition(store: Store) -> None:
    store.save_queue(
        queue(
            rate_limit=3, rate_period_sec=3600.0, partition_queue=True,
            partition_rate_limit=2, partition_rate_period_sec=3600.0,
        )
    )  # fmt: skip
    for n in range(3):
        for key in "ab":
            enqueue(store, f"{key}{n}", queue_partition_key=key, created_at=n)
    admit = Admit()
    assert sorted(_ids(take(store, admit=admit))) == ["a0", "a1", "b0"]
    assert take(store) == []
    # b saw the whole queue's starts including the two just taken from a.
    key, whole = admit.seen[-1][1].partition_key, admit.seen[-1][1].whole
    assert (key, len(whole.recent_starts_ms) if whole else None) == ("b", 2)


def test_the_legacy_partition_queue_applies_every_limit_per_partition(store: Store) -> None:
    # DBOS 2.31's partition_queue=True: concurrency=1 is one per partition, none over the queue.
    store.save_queue(queue(concurrency=1, worker_concurrency=1, partition_queue=True))
    for n, key in enumerate("abc"):
        enqueue(store, f"{key}{n}", queue_partition_key=key, created_at=n)
    assert _ids(take(store)) == ["a0", "b1", "c2"]


def test_keys_follow_the_definition_as_it_is_now(store: Store) -> None:
    # Enqueued with a key, then the queue stopped being partitioned: claimed like any other.
    store.save_queue(queue(concurrency=2))
    enqueue(store, "keyed", queue_partition_key="a", created_at=1)
    enqueue(store, "plain", created_at=2)
    assert _ids(take(store)) == ["keyed", "plain"]
    # Enqueued without one on a queue partitioned since: one partition of their own.
    store.save_queue(queue(name="p", partition_queue=True, partition_concurrency=1))
    enqueue(store, "p1", queue_name="p", created_at=1)
    enqueue(store, "p2", queue_name="p", created_at=2)
    assert _ids(take(store, default=queue(name="p"))) == ["p1"]


def test_a_claim_takes_no_more_than_admit_allows(store: Store) -> None:
    for n in range(3):
        enqueue(store, f"w{n}", created_at=n)
    assert (
        store.claim_queued(
            QueueClaim(PLAIN, "local", "me", new_owner_token(), ("wf",), "", 10), lambda r, o: 0
        )
        == []
    )
    assert _ids(
        store.claim_queued(
            QueueClaim(PLAIN, "local", "me", new_owner_token(), ("wf",), "", 10), lambda r, o: 2
        )
    ) == ["w0", "w1"]


def test_concurrent_claims_never_exceed_a_global_limit(db_url: str) -> None:
    setup = open_store(db_url)
    setup.migrate()
    setup.save_queue(queue(concurrency=3))
    for n in range(10):
        enqueue(setup, f"w{n}", created_at=n)
    claimants = [open_store(db_url) for _ in range(4)]  # like four processes
    won: list[str] = []
    barrier = threading.Barrier(len(claimants))

    def claim_repeatedly(number: int, claimant: Store) -> None:
        barrier.wait()
        for _ in range(5):
            won.extend(_ids(take(claimant, instance_id=f"i{number}", batch=2)))

    threads = [threading.Thread(target=claim_repeatedly, args=c) for c in enumerate(claimants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for claimant in claimants:
        claimant.close()
    assert sorted(won) == ["w0", "w1", "w2"]
    setup.close()


def test_concurrent_claims_take_each_workflow_once(db_url: str) -> None:
    setup = open_store(db_url)
    setup.migrate()
    for n in range(40):
        enqueue(setup, f"w{n}", created_at=n)
    claimants = [open_store(db_url) for _ in range(4)]
    won: list[str] = []
    barrier = threading.Barrier(len(claimants))

    def claim_repeatedly(number: int, claimant: Store) -> None:
        barrier.wait()
        for _ in range(10):
            won.extend(_ids(take(claimant, instance_id=f"i{number}", batch=3)))

    threads = [threading.Thread(target=claim_repeatedly, args=c) for c in enumerate(claimants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for claimant in claimants:
        claimant.close()
    assert sorted(won) == sorted(f"w{n}" for n in range(40))
    setup.close()
