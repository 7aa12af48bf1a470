"""Launched processes: heartbeats, the locks that prove them alive, forgetting the dead.

A lock is held by a real second process: on SQLite the lock is a POSIX record lock, which a
process never sees as held by itself, so only another process can show it held.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from perdure.storage import Store
from perdure.storage.records import ExecutorRecord, new_owner_token
from tests.fixtures.app import wait_until
from tests.storage.store_helpers import S, start

WAIT_SEC = 30.0

# Opens the store, holds the lock of ``key`` and beats; then obeys stdin: "close" releases
# the lock (the process lives on), end of input exits.
HOLDER = textwrap.dedent(
    """
    import sys
    from perdure.storage import open_store
    from perdure.storage.records import ExecutorRecord

    url, key = sys.argv[1], int(sys.argv[2])
    store = open_store(url)
    record = ExecutorRecord("holder", "local", "", "host", 1, 0, 0, lock_key=key)
    liveness = store.open_liveness(record)
    print("ready" if liveness.beat() else "not held", flush=True)
    for line in sys.stdin:
        if line.strip() == "close":
            liveness.close()
            print("closed", flush=True)
    store.close()
    """
)


def executor(instance_id: str, *, lock_key: int | None = None) -> ExecutorRecord:
    return ExecutorRecord(
        instance_id=instance_id, executor_id="local", app_version="v1", hostname="host",
        pid=1234, started_at=0, heartbeat_at=0, lock_key=lock_key,
    )  # fmt: skip


class Holder:
    """A second process holding a lock key through its liveness."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def read_line(self) -> str:
        """The holder's next line, within a deadline (a hung holder fails the test)."""
        stdout = self.process.stdout
        assert stdout is not None
        got: list[str] = []
        reader = threading.Thread(
            target=lambda: got.append(stdout.readline()), name="holder-reader", daemon=True
        )
        reader.start()
        reader.join(WAIT_SEC)
        assert got, "the holder process said nothing in time"
        return got[0].strip()

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


@contextmanager
def holding(url: str, key: int) -> Iterator[Holder]:
    """A process that holds lock ``key`` until told to close it, killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(key)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holder = Holder(process)
    try:
        assert holder.read_line() == "ready"
        yield holder
    finally:
        process.kill()
        process.wait(WAIT_SEC)
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        process.stdout.close()


def test_a_beat_records_the_process_and_holds_its_lock(store: Store) -> None:
    liveness = store.open_liveness(executor("me", lock_key=new_owner_token()))
    try:
        assert liveness.beat()
        [row] = store.list_executors()
        assert (row.instance_id, row.executor_id, row.app_version) == ("me", "local", "v1")
        assert (row.hostname, row.pid) == ("host", 1234)
        assert 0 <= row.silent_ms < 5_000
        assert row.heartbeat_at >= row.started_at > 0
        first = row.heartbeat_at
        wait_until(lambda: store.list_executors()[0].silent_ms > 2, timeout=WAIT_SEC)
        assert liveness.beat()
        [again] = store.list_executors()
        assert (again.started_at, again.heartbeat_at > first) == (row.started_at, True)
    finally:
        liveness.close()


def test_executors_are_listed_most_recent_heartbeat_first(store: Store) -> None:
    for instance_id in ("a", "b"):
        liveness = store.open_liveness(executor(instance_id))
        assert not liveness.beat()  # without a lock key it holds no lock
        liveness.close()
        wait_until(lambda: store.list_executors()[0].silent_ms > 2, timeout=WAIT_SEC)
    assert [r.instance_id for r in store.list_executors()] == ["b", "a"]


def test_a_lock_held_by_a_live_process_is_not_free(store: Store) -> None:
    key, unheld = new_owner_token(), new_owner_token()
    with holding(store.url, key) as holder:
        assert store.free_lock_keys((key, unheld)) == {unheld}
        # Nobody else can take it while it is held.
        mine = store.open_liveness(executor("me", lock_key=key))
        try:
            assert not mine.beat()
        finally:
            mine.close()
        holder.say("close")
        assert holder.read_line() == "closed"
        assert store.free_lock_keys((key, unheld)) == {key, unheld}
    assert store.free_lock_keys(()) == set()


def test_a_lock_is_free_the_moment_its_process_dies(store: Store) -> None:
    key = new_owner_token()
    with holding(store.url, key) as holder:
        assert store.free_lock_keys((key,)) == set()
        holder.process.kill()
        holder.process.wait(WAIT_SEC)
        wait_until(lambda: store.free_lock_keys((key,)) == {key}, timeout=WAIT_SEC)
    # Its heartbeat row stays behind: only the lock shows it is gone.
    assert [r.instance_id for r in store.list_executors()] == ["holder"]


def test_owners_without_heartbeat_are_those_with_pending_work_and_no_row(store: Store) -> None:
    start(store, "w1", instance_id="ghost")
    start(store, "w2", instance_id="ghost")
    start(store, "w3", instance_id="alive")
    start(store, "done", instance_id="gone", status=S.SUCCESS)
    alive = store.open_liveness(executor("alive"))
    alive.beat()
    alive.close()
    assert store.owners_without_heartbeat() == ["ghost"]


def test_a_dead_instance_is_forgotten_once_silent_and_owning_nothing_pending(
    store: Store,
) -> None:
    token = start(store, "w", instance_id="dead")
    liveness = store.open_liveness(executor("dead"))
    liveness.beat()
    liveness.close()
    wait_until(lambda: store.list_executors()[0].silent_ms > 20, timeout=WAIT_SEC)
    assert not store.forget_instance("dead", silent_for_ms=3_600_000)  # not silent that long
    assert not store.forget_instance("dead", silent_for_ms=10)  # it still owns "w"
    store.finish_workflow("w", token, status=S.SUCCESS)
    assert store.forget_instance("dead", silent_for_ms=10)
    assert store.list_executors() == []
    assert not store.forget_instance("dead", silent_for_ms=10)
