"""The flow-control arithmetic of queues, without a database."""

from __future__ import annotations

import pytest

from perdure.queues.limits import (
    FlowLimits,
    admissible,
    idle_wait_sec,
    most_starts_in_any_window,
    rate_limit_frees_at,
    starts_in_window,
)
from perdure.queues.queue import INTERNAL_QUEUE_NAME, QueueDirectory, QueueSpec
from perdure.storage.records import Occupancy


def occupancy(running: int = 0, here: int = 0, starts: tuple[int, ...] = ()) -> Occupancy:
    return Occupancy(None, running, here, starts, now_ms=0)


def test_no_limits_admit_the_whole_batch() -> None:
    assert admissible(FlowLimits(), occupancy(running=500), now_ms=0, batch=7) == 7


def test_global_concurrency_counts_every_process() -> None:
    limits = FlowLimits(concurrency=3)
    assert admissible(limits, occupancy(running=1), now_ms=0, batch=10) == 2
    assert admissible(limits, occupancy(running=3), now_ms=0, batch=10) == 0
    # Over the limit (e.g. after a change of settings) admits nothing, never a negative count.
    assert admissible(limits, occupancy(running=5), now_ms=0, batch=10) == 0


def test_worker_concurrency_counts_this_process_only() -> None:
    limits = FlowLimits(concurrency=10, worker_concurrency=2)
    assert admissible(limits, occupancy(running=9, here=0), now_ms=0, batch=10) == 1
    assert admissible(limits, occupancy(running=4, here=1), now_ms=0, batch=10) == 1
    assert admissible(limits, occupancy(running=4, here=2), now_ms=0, batch=10) == 0


def test_rate_limit_counts_starts_in_the_sliding_window() -> None:
    limits = FlowLimits(rate_limit=3, rate_period_ms=1000)
    now = 10_000
    # 9_000 is exactly one period ago: it no longer counts.
    starts = (9_000, 9_500, 9_999)
    assert starts_in_window(starts, now, 1000) == 2
    assert admissible(limits, occupancy(starts=starts), now_ms=now, batch=10) == 1
    assert admissible(limits, occupancy(starts=(9_500, 9_600, 9_700)), now_ms=now, batch=10) == 0


def test_rate_limit_frees_when_the_oldest_counted_start_ages_out() -> None:
    limits = FlowLimits(rate_limit=2, rate_period_ms=1000)
    assert rate_limit_frees_at(limits, (9_200, 9_700), 10_000) == 10_200
    # Over-full (three starts for a limit of two): two must age out.
    assert rate_limit_frees_at(limits, (9_200, 9_500, 9_700), 10_000) == 10_500
    assert rate_limit_frees_at(limits, (9_700,), 10_000) is None
    assert rate_limit_frees_at(FlowLimits(concurrency=1), (9_700,), 10_000) is None


def test_most_starts_in_any_window() -> None:
    assert most_starts_in_any_window([], 1000) == 0
    assert most_starts_in_any_window([0, 999, 1000, 1999], 1000) == 2
    assert most_starts_in_any_window([5, 0, 10, 3000], 1000) == 3


def test_the_tightest_limit_wins() -> None:
    limits = FlowLimits(concurrency=5, worker_concurrency=4, rate_limit=2, rate_period_ms=1000)
    assert admissible(limits, occupancy(running=1, here=1), now_ms=0, batch=10) == 2
    assert admissible(limits, occupancy(), now_ms=0, batch=1) == 1


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
        ({"limiter": {"limit": 1}}, "exactly the keys 'limit' and 'period'"),
        ({"limiter": {"limit": 1, "period": 1, "x": 2}}, "exactly the keys"),
        ({"limiter": {"limit": 0, "period": 1}}, "'limit' must be a positive integer"),
        ({"limiter": {"limit": 2, "period": 0}}, "'period' must be a positive number"),
        ({"limiter": {"limit": 2, "period": -1.5}}, "'period' must be a positive number"),
        ({"polling_interval_sec": 0}, "polling_interval_sec must be a positive"),
    ],
)
def test_invalid_settings_name_the_queue_and_the_fix(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        QueueSpec.create("jobs", **kwargs)  # type: ignore[arg-type]
    assert "'jobs'" in str(caught.value)


def test_names_of_perdure_queues_are_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        QueueSpec.create(INTERNAL_QUEUE_NAME)
    with pytest.raises(ValueError, match="reserved"):
        QueueSpec.create("_perdure_mine")


def test_a_name_is_defined_once() -> None:
    directory = QueueDirectory()
    first = directory.define(QueueSpec.create("jobs", concurrency=2))
    assert directory.define(QueueSpec.create("jobs", concurrency=2)) is first
    with pytest.raises(ValueError, match="already defined with other settings"):
        directory.define(QueueSpec.create("jobs", concurrency=3))
    directory.define(QueueSpec.create("other"))
    assert [s.name for s in directory.served()] == ["jobs", "other"]
    directory.listen(["other", "missing"])
    assert [s.name for s in directory.served()] == ["other"]


def test_a_spec_round_trips_through_its_stored_record() -> None:
    spec = QueueSpec.create(
        "jobs", 4, {"limit": 3, "period": 2.5}, worker_concurrency=2, priority_enabled=True
    )
    assert QueueSpec.from_record(spec.record()) == spec
    assert spec.limiter == {"limit": 3, "period": 2.5}
    assert spec.limits == FlowLimits(4, 2, 3, 2500)
