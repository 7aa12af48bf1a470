"""The flow-control arithmetic of queues, and the checks of their settings, without a database."""

from __future__ import annotations

import pytest

from perdure.error import DBOSException
from perdure.queues.limits import (
    QueueLimits,
    admissible,
    idle_wait_sec,
    most_starts_in_any_window,
    rate_limit_frees_at,
    rate_limits_free_at,
    starts_in_window,
)
from perdure.queues.queue import (
    INTERNAL_QUEUE_NAME,
    Declaration,
    QueueDirectory,
    QueueSpec,
    check_on_conflict,
)
from perdure.storage.records import Occupancy, ScopeLimits


def occupancy(
    running: int = 0, here: int = 0, starts: tuple[int, ...] = (), whole: Occupancy | None = None
) -> Occupancy:
    return Occupancy(None, running, here, starts, now_ms=0, whole=whole)


def whole(**limits: object) -> QueueLimits:
    """Limits over the whole queue only."""
    return QueueLimits(whole=ScopeLimits(**limits))  # type: ignore[arg-type]


def test_no_limits_admit_the_whole_batch() -> None:
    assert admissible(QueueLimits(), occupancy(running=500), now_ms=0, batch=7) == 7


def test_global_concurrency_counts_every_process() -> None:
    limits = whole(concurrency=3)
    assert admissible(limits, occupancy(running=1), now_ms=0, batch=10) == 2
    assert admissible(limits, occupancy(running=3), now_ms=0, batch=10) == 0
    # Over the limit (e.g. after a change of settings) admits nothing, never a negative count.
    assert admissible(limits, occupancy(running=5), now_ms=0, batch=10) == 0


def test_worker_concurrency_counts_this_process_only() -> None:
    limits = whole(concurrency=10, worker_concurrency=2)
    assert admissible(limits, occupancy(running=9, here=0), now_ms=0, batch=10) == 1
    assert admissible(limits, occupancy(running=4, here=1), now_ms=0, batch=10) == 1
    assert admissible(limits, occupancy(running=4, here=2), now_ms=0, batch=10) == 0


def test_rate_limit_counts_starts_in_the_sliding_window() -> None:
    limits = whole(rate_limit=3, rate_period_sec=1.0)
    now = 10_000
    # 9_000 is exactly one period ago: it no longer counts.
    starts = (9_000, 9_500, 9_999)
    assert starts_in_window(starts, now, 1000) == 2
    assert admissible(limits, occupancy(starts=starts), now_ms=now, batch=10) == 1
    assert admissible(limits, occupancy(starts=(9_500, 9_600, 9_700)), now_ms=now, batch=10) == 0


def test_rate_limit_frees_when_the_oldest_counted_start_ages_out() -> None:
    limits = ScopeLimits(rate_limit=2, rate_period_sec=1.0)
    assert rate_limit_frees_at(limits, (9_200, 9_700), 10_000) == 10_200
    # Over-full (three starts for a limit of two): two must age out.
    assert rate_limit_frees_at(limits, (9_200, 9_500, 9_700), 10_000) == 10_500
    assert rate_limit_frees_at(limits, (9_700,), 10_000) is None
    assert rate_limit_frees_at(ScopeLimits(concurrency=1), (9_700,), 10_000) is None


def test_most_starts_in_any_window() -> None:
    assert most_starts_in_any_window([], 1000) == 0
    assert most_starts_in_any_window([0, 999, 1000, 1999], 1000) == 2
    assert most_starts_in_any_window([5, 0, 10, 3000], 1000) == 3


def test_the_tightest_limit_wins() -> None:
    limits = whole(concurrency=5, worker_concurrency=4, rate_limit=2, rate_period_sec=1.0)
    assert admissible(limits, occupancy(running=1, here=1), now_ms=0, batch=10) == 2
    assert admissible(limits, occupancy(), now_ms=0, batch=1) == 1


def test_a_partition_gets_what_both_its_limits_and_the_whole_queues_allow() -> None:
    limits = QueueLimits(
        whole=ScopeLimits(concurrency=5, worker_concurrency=3),
        partition=ScopeLimits(concurrency=2, worker_concurrency=1),
    )
    queue = occupancy(running=3, here=1)
    assert admissible(limits, occupancy(whole=queue), now_ms=0, batch=10) == 1  # its worker limit
    assert admissible(limits, occupancy(running=2, whole=queue), now_ms=0, batch=10) == 0
    full = occupancy(running=5, here=1)
    assert admissible(limits, occupancy(whole=full), now_ms=0, batch=10) == 0  # the queue is full
    mine = occupancy(running=3, here=3)
    assert admissible(limits, occupancy(whole=mine), now_ms=0, batch=10) == 0  # this worker is
    # Partition limits never apply to the whole queue's occupancy itself.
    assert admissible(limits, occupancy(running=3, here=1), now_ms=0, batch=10) == 2


def test_rate_limits_free_at_the_later_of_the_full_scopes() -> None:
    limits = QueueLimits(
        whole=ScopeLimits(rate_limit=2, rate_period_sec=1.0),
        partition=ScopeLimits(rate_limit=1, rate_period_sec=2.0),
    )
    queue = Occupancy(None, 0, 0, (9_500, 9_600), 10_000)
    part = Occupancy("a", 0, 0, (9_000,), 10_000, whole=queue)
    assert rate_limits_free_at(limits, part) == 11_000  # the partition's, later than 10_500
    idle = Occupancy("b", 0, 0, (), 10_000, whole=queue)
    assert rate_limits_free_at(limits, idle) == 10_500
    assert rate_limits_free_at(QueueLimits(), idle) is None


def test_idle_wait_backs_off_to_five_intervals() -> None:
    waits = [idle_wait_sec(0.5, passes) for passes in range(6)]
    assert waits == [0.5, 0.5, 1.0, 2.0, 2.5, 2.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive integer"),
        ({"concurrency": -1}, "concurrency must be a positive integer"),
        ({"worker_concurrency": 0}, "worker_concurrency must be a positive integer"),
        ({"concurrency": 1, "worker_concurrency": 2}, "exceeds concurrency=1"),
        ({"limiter": {"limit": 1}}, "both 'limit' and 'period'"),
        ({"limiter": {"limit": 1, "period": 1, "x": 2}}, "both 'limit' and 'period'"),
        ({"limiter": {"limit": 0, "period": 1}}, "'limit' must be a positive integer"),
        ({"limiter": {"limit": 2, "period": 0}}, "'period' must be a positive number"),
        ({"limiter": {"limit": 2, "period": -1.5}}, "'period' must be a positive number"),
        ({"polling_interval_sec": 0}, "polling_interval_sec must be a positive"),
        ({"partition_concurrency": 0}, "partition_concurrency must be a positive integer"),
        ({"partition_limiter": {"limit": 1}}, "partition_limiter must be a dict"),
        (
            {"partition_concurrency": 1, "partition_worker_concurrency": 2},
            "partition_worker_concurrency=2 exceeds partition_concurrency=1",
        ),
        ({"worker_concurrency": 1, "partition_worker_concurrency": 2}, "exceeds worker_conc"),
        ({"global_concurrency": 2, "partition_concurrency": 3}, "exceeds concurrency=2"),
        ({"concurrency": 1, "global_concurrency": 1}, "set only one of them"),
        ({"partition_queue": True, "partition_concurrency": 1}, "Drop partition_queue"),
        ({"partition_queue": True, "global_concurrency": 1}, "every limit holds per partition"),
    ],
)
def test_invalid_settings_name_the_queue_and_the_fix(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        QueueSpec.create("jobs", **kwargs)  # type: ignore[arg-type]
    assert "'jobs'" in str(caught.value)


def test_names_of_perdure_and_dbos_queues_are_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        QueueSpec.create(INTERNAL_QUEUE_NAME)
    with pytest.raises(ValueError, match="reserved"):
        QueueSpec.create("_perdure_mine")
    with pytest.raises(ValueError, match="is reserved"):  # DBOS's own, as DBOS reserves them
        QueueSpec.create("_dbos_internal_queue")


def test_partition_limits_partition_the_queue_and_scope_the_other_limits() -> None:
    # DBOS 3.4: the partition_* limits hold per partition, the others over the whole queue.
    spec = QueueSpec.create(
        "jobs", global_concurrency=4, worker_concurrency=3, limiter={"limit": 9, "period": 1},
        partition_concurrency=2, partition_worker_concurrency=1,
        partition_limiter={"limit": 5, "period": 2},
    )  # fmt: skip
    assert (spec.partitioned, spec.partition_queue, spec.every_limit_per_partition) == (
        True, True, False,
    )  # fmt: skip
    assert spec.limits == QueueLimits(ScopeLimits(4, 3, 9, 1.0), ScopeLimits(2, 1, 5, 2.0))
    # DBOS 2.31's partition_queue=True: every limit per partition, none over the queue.
    legacy = QueueSpec.create("jobs", 2, {"limit": 3, "period": 1}, partition_queue=True)
    assert (legacy.partitioned, legacy.every_limit_per_partition) == (True, True)
    assert legacy.limits == QueueLimits(ScopeLimits(), ScopeLimits(2, None, 3, 1.0))
    plain = QueueSpec.create("jobs", 2)
    assert not plain.partitioned
    assert plain.limits == QueueLimits(ScopeLimits(2))


def test_a_change_is_checked_like_a_new_definition() -> None:
    spec = QueueSpec.create("jobs", worker_concurrency=2)
    assert spec.changed("global_concurrency", 5).concurrency == 5
    with pytest.raises(ValueError, match="worker_concurrency=2 exceeds concurrency=1"):
        spec.changed("concurrency", 1)
    limited = spec.changed("limiter", {"limit": 3, "period": 0.5})
    assert limited.limiter == {"limit": 3, "period": 0.5}
    assert limited.changed("limiter", None).limiter is None
    parted = spec.changed("partition_concurrency", 2)
    assert (parted.partitioned, parted.partition_queue) == (True, True)
    # Clearing the last partition limit unpartitions it, as in DBOS.
    assert not parted.changed("partition_concurrency", None).partitioned
    with pytest.raises(DBOSException, match="partition_\\* limits partition it"):
        parted.changed("partition_queue", False)
    with pytest.raises(ValueError, match="polling_interval_sec"):
        spec.changed("polling_interval_sec", 0)
    legacy = QueueSpec.create("jobs", 2, partition_queue=True)
    assert legacy.changed("concurrency", 3).concurrency == 3  # per partition, as before
    for refused in ("global_concurrency", "worker_concurrency", "partition_concurrency"):
        with pytest.raises(DBOSException, match="partition_queue=True"):
            legacy.changed(refused, 1)
    assert not legacy.changed("partition_queue", False).partitioned


def test_on_conflict_is_one_of_dboss_three() -> None:
    assert check_on_conflict("q", "never_update") == "never_update"
    with pytest.raises(ValueError, match="on_conflict must be one of"):
        check_on_conflict("q", "sometimes")


def test_a_name_is_declared_once_unless_registered_again() -> None:
    directory = QueueDirectory()
    first = directory.define(Declaration(QueueSpec.create("jobs", concurrency=2)))
    assert directory.define(Declaration(QueueSpec.create("jobs", concurrency=2))) is first
    with pytest.raises(ValueError, match="already defined with other settings"):
        directory.define(Declaration(QueueSpec.create("jobs", concurrency=3)))
    # DBOS.register_queue: other settings replace the declaration, unless never_update.
    kept = Declaration(QueueSpec.create("jobs", concurrency=4), "never_update")
    assert directory.define(kept, redefine=True) is first
    newer = QueueSpec.create("jobs", concurrency=4)
    assert directory.define(Declaration(newer), redefine=True) is newer
    assert directory.get("jobs") is newer
    directory.define(Declaration(QueueSpec.create("other")))
    assert [s.name for s in directory.all()] == ["jobs", "other"]
    assert directory.serves("anything")
    directory.listen(["other", "missing"])
    assert (directory.serves("other"), directory.serves("jobs")) == (True, False)
    directory.forget("jobs")
    assert directory.get("jobs") is None


def test_a_spec_round_trips_through_its_stored_record() -> None:
    spec = QueueSpec.create(
        "jobs", 4, {"limit": 3, "period": 2.5}, worker_concurrency=2, priority_enabled=True,
        partition_concurrency=2, partition_limiter={"limit": 1, "period": 0.5},
    )  # fmt: skip
    assert QueueSpec.from_record(spec.record()) == spec
    assert spec.limiter == {"limit": 3, "period": 2.5}
    assert spec.partition_limiter == {"limit": 1, "period": 0.5}
    assert spec.limits.whole == ScopeLimits(4, 2, 3, 2.5)
    assert spec.limits.whole.rate_period_ms == 2500
