"""`perdure.testing.VirtualClock`: everything timed for workflows follows it, and advancing it
makes what fell due run at once, durably, with no real waiting. Liveness stays on real time.

Each test installs the clock before configuring and launching Perdure (as the ``perdure_app``
fixture does), so the schedule loop counts its ticks on it. Real elapsed times are bounded
generously (a loaded runner is slow at times); the design makes them a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from perdure import DBOS, Debouncer, Queue, SetEnqueueOptions, SetWorkflowID, SetWorkflowTimeout
from perdure import clock as seam
from perdure.error import DBOSAwaitedWorkflowCancelledError, DBOSStreamTimeoutError
from perdure.testing import VirtualClock
from tests.fixtures.app import make_config, wait_until
from tests.integration.system_tables import step_rows

DAY = 86400.0
HOUR = 3600.0
# Real seconds a test may take: generous, while the time it skips is hours or days.
REAL_BOUND_SEC = 5.0


@pytest.fixture
def clock(db_url: str) -> Iterator[VirtualClock]:
    """A virtual clock installed, and Perdure configured on it; the test declares its
    workflows, then calls `launch`. Destroyed (registry too) after."""
    with VirtualClock() as virtual:
        DBOS(config=make_config(db_url))
        try:
            yield virtual
        finally:
            DBOS.destroy(destroy_registry=True)


def launch() -> None:
    """Launch, and wait until the schedule loop has seen the declared schedules."""
    DBOS.launch()
    runtime = DBOS._runtime
    assert runtime is not None
    assert runtime.scheduler is not None
    assert runtime.scheduler.first_pass_done.wait(10)


def _status(workflow_id: str) -> str:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status.status


def test_a_month_of_sleep_an_hour_of_recv_and_a_daily_schedule_take_no_real_time(
    clock: VirtualClock, db_url: str
) -> None:
    days: list[datetime] = []

    @DBOS.scheduled("0 0 * * *")  # every day at midnight (UTC)
    @DBOS.workflow()
    def daily(scheduled_time: datetime, actual_time: datetime) -> None:
        days.append(scheduled_time)

    @DBOS.workflow()
    def patient() -> str:
        DBOS.sleep(30 * DAY)
        message = DBOS.recv("nudge", timeout_seconds=HOUR)
        return f"woke, then heard {message}"

    launch()
    started_real = time.monotonic()
    started = clock.now()
    with SetWorkflowID("patient"):
        handle = DBOS.start_workflow(patient)

    assert clock.wait_for_timer("patient") - started >= timedelta(days=30)
    clock.advance(days=1)
    midnight = {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}
    first_midnight = (started + timedelta(days=1)).replace(**midnight)
    wait_until(lambda: days, what="the first daily tick")
    assert days == [first_midnight]
    assert _status("patient") == "PENDING"  # a day into its month

    clock.advance(days=29)
    recv_due = clock.wait_for_timer("patient")  # asleep no more: waiting for its message
    assert timedelta(minutes=59) <= recv_due - clock.now() <= timedelta(hours=1)
    clock.advance(hours=1)
    assert handle.get_result() == "woke, then heard None"

    wait_until(lambda: len(days) >= 30, what="thirty daily ticks")
    assert days == [first_midnight + timedelta(days=i) for i in range(30)]
    assert time.monotonic() - started_real < REAL_BOUND_SEC
    # Durable: the recorded wake-up time is thirty days of workflow time after the sleep began.
    sleep_row = next(r for r in step_rows(db_url, "patient") if r.function_name == "DBOS.sleep")
    wake_ms = int(bytes(sleep_row.output))
    assert wake_ms - sleep_row.started_at_epoch_ms == 30 * 86_400_000
    assert wake_ms > time.time() * 1000 + 29 * 86_400_000


def test_async_sleep_follows_the_clock(clock: VirtualClock) -> None:
    @DBOS.workflow()
    async def nap() -> str:
        await DBOS.sleep_async(DAY)
        return "rested"

    launch()
    started_real = time.monotonic()
    with SetWorkflowID("nap"):
        handle = DBOS.start_workflow(nap)
    clock.wait_for_timer("nap")
    clock.advance(days=1)
    assert handle.get_result() == "rested"
    assert time.monotonic() - started_real < REAL_BOUND_SEC


def test_async_sleep_in_an_event_loop_follows_the_clock(clock: VirtualClock) -> None:
    @DBOS.workflow()
    async def nap() -> str:
        await DBOS.sleep_async(HOUR)
        return "rested"

    launch()

    async def main() -> str:
        with SetWorkflowID("loop-nap"):
            handle = await DBOS.start_workflow_async(nap)
        await asyncio.to_thread(clock.wait_for_timer, "loop-nap")
        clock.advance(hours=1)
        return str(await handle.get_result())

    assert asyncio.run(main()) == "rested"


def test_a_workflow_timeout_follows_the_clock(clock: VirtualClock) -> None:
    after: list[str] = []

    @DBOS.workflow()
    def slow() -> None:
        DBOS.sleep(2 * HOUR)
        after.append("woke")

    launch()
    with SetWorkflowID("slow"), SetWorkflowTimeout(HOUR):
        handle = DBOS.start_workflow(slow)
    # The sleep wakes at the deadline, the first of the two.
    assert clock.wait_for_timer("slow") - clock.now() <= timedelta(hours=1)
    clock.advance(hours=1)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert _status("slow") == "CANCELLED"
    assert after == []


def test_a_queue_delay_follows_the_clock(clock: VirtualClock) -> None:
    queue = Queue("later")

    @DBOS.workflow()
    def job(n: int) -> int:
        return n

    launch()
    with SetEnqueueOptions(delay_seconds=DAY):
        tomorrow = queue.enqueue(job, 1)
        next_week = queue.enqueue(job, 2)
    DBOS.set_workflow_delay(next_week.workflow_id, delay_seconds=7 * DAY)
    assert _status(tomorrow.workflow_id) == _status(next_week.workflow_id) == "DELAYED"

    clock.advance(days=1)
    assert tomorrow.get_result() == 1
    assert _status(next_week.workflow_id) == "DELAYED"
    delayed = DBOS.list_workflows(status="DELAYED")
    assert [w.workflow_id for w in delayed] == [next_week.workflow_id]
    clock.advance(days=6)
    assert next_week.get_result() == 2


def test_a_rate_limit_window_follows_the_clock(clock: VirtualClock) -> None:
    queue = Queue("two-an-hour", limiter={"limit": 2, "period": HOUR})

    @DBOS.workflow()
    def job(n: int) -> int:
        return n

    launch()
    handles = [queue.enqueue(job, n) for n in range(4)]
    assert [h.get_result() for h in handles[:2]] == [0, 1]
    # The window is full for the next hour of workflow time: the others wait for it.
    assert [_status(h.workflow_id) for h in handles[2:]] == ["ENQUEUED", "ENQUEUED"]
    clock.advance(minutes=59)
    assert [_status(h.workflow_id) for h in handles[2:]] == ["ENQUEUED", "ENQUEUED"]
    clock.advance(minutes=1)
    assert [h.get_result() for h in handles[2:]] == [2, 3]


def test_a_get_event_timeout_follows_the_clock(clock: VirtualClock) -> None:
    @DBOS.workflow()
    def silent() -> None:
        DBOS.recv("never", timeout_seconds=2 * DAY)

    @DBOS.workflow()
    def listener(target: str) -> object:
        return DBOS.get_event(target, "status", timeout_seconds=HOUR)

    launch()
    with SetWorkflowID("silent"):
        DBOS.start_workflow(silent)
    with SetWorkflowID("listener"):
        handle = DBOS.start_workflow(listener, "silent")
    clock.wait_for_timer("listener")
    clock.advance(hours=1)
    assert handle.get_result() is None


def test_a_stream_read_timeout_follows_the_clock(clock: VirtualClock) -> None:
    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("numbers", 1)
        DBOS.recv("never", timeout_seconds=2 * DAY)  # the stream stays open

    @DBOS.workflow()
    def reader(target: str) -> list[int]:
        read: list[int] = []
        try:
            read.extend(DBOS.read_stream(target, "numbers", timeout_seconds=HOUR))
        except DBOSStreamTimeoutError:
            read.append(-1)
        return read

    launch()
    with SetWorkflowID("writer"):
        DBOS.start_workflow(writer)
    clock.wait_for_timer("writer")  # it wrote its value: the reader's first read has it
    with SetWorkflowID("reader"):
        handle = DBOS.start_workflow(reader, "writer")
    clock.wait_for_timer("reader")  # read 1, waits for the next value
    clock.advance(hours=1)
    assert handle.get_result() == [1, -1]


def test_a_debounce_window_follows_the_clock(clock: VirtualClock) -> None:
    runs: list[int] = []

    @DBOS.workflow(name="apply")
    def apply(x: int) -> int:
        runs.append(x)
        return x

    launch()
    debouncer = Debouncer.create(apply)
    first = debouncer.debounce("k", HOUR, 1)
    clock.advance(minutes=30)
    second = debouncer.debounce("k", HOUR, 2)  # the window now ends an hour from here
    assert second.workflow_id == first.workflow_id
    clock.advance(minutes=59)
    assert _status(first.workflow_id) == "DELAYED"
    assert runs == []
    clock.advance(minutes=1)
    assert first.get_result() == 2
    assert runs == [2]


def test_liveness_stays_on_real_time(clock: VirtualClock) -> None:
    @DBOS.workflow()
    def waiter() -> object:
        return DBOS.recv("go", timeout_seconds=60 * DAY)

    launch()
    with SetWorkflowID("waiter"):
        handle = DBOS.start_workflow(waiter)
    clock.wait_for_timer("waiter")
    clock.advance(days=30)
    runtime = DBOS._runtime
    assert runtime is not None
    # Heartbeats are judged by the database's clock: this process has not been silent.
    [me] = runtime.engine.store.list_executors()
    assert me.silent_ms < 30_000
    DBOS.send("waiter", "now", topic="go")
    assert handle.get_result() == "now"
    status = handle.get_status()
    assert status.recovery_attempts == 1  # never taken over: its owner never looked dead


def test_time_never_moves_back(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(seconds=-1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance_to(clock.now() - timedelta(minutes=1))
    target = datetime.now(timezone.utc) + timedelta(days=365)
    assert clock.advance_to(target) >= target


def test_without_a_virtual_clock_workflows_follow_the_machines_clock(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def briefly() -> object:
        return DBOS.recv("nothing", timeout_seconds=0.2)

    assert seam.installed() is None
    started_real, started_ms = time.monotonic(), time.time() * 1000
    with SetWorkflowID("briefly"):
        assert briefly() is None
    assert time.monotonic() - started_real >= 0.19  # the timeout waited in real time
    status = DBOS.get_workflow_status("briefly")
    assert status is not None
    assert started_ms - 1 <= status.created_at <= time.time() * 1000
