"""`GroupCommit` with fake writers: alone when uncontended, batched when concurrent."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from perdure.storage import group_commit
from perdure.storage.group_commit import GroupCommit
from perdure.storage.records import StepRow
from tests.fixtures.app import wait_until

WAIT = 10.0


def step(workflow_id: str) -> StepRow:
    return StepRow(workflow_id, 0, "s", b"1", None, None, "json", 1, 2)


class FakeWriters:
    """Records every write; the first single write can be held until released."""

    def __init__(self, *, hold_first: bool = False, refuse: frozenset[str] = frozenset()) -> None:
        self.singles: list[str] = []
        self.batches: list[list[str]] = []
        self.refuse = refuse
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_batches = False

    def one(self, s: StepRow) -> bool:
        self.singles.append(s.workflow_id)
        self.entered.set()
        assert self.release.wait(WAIT)
        return s.workflow_id not in self.refuse

    def many(self, steps: Sequence[StepRow]) -> list[bool]:
        self.batches.append([s.workflow_id for s in steps])
        if self.fail_batches:
            raise ConnectionError("database gone")
        return [s.workflow_id not in self.refuse for s in steps]


def test_an_uncontended_step_is_written_alone() -> None:
    writers = FakeWriters(refuse=frozenset({"no"}))
    commit = GroupCommit(writers.one, writers.many)
    assert commit.record(step("yes")) is True
    assert commit.record(step("no")) is False
    assert (writers.singles, writers.batches) == (["yes", "no"], [])


def _record_in_threads(
    commit: GroupCommit, names: list[str]
) -> tuple[list[threading.Thread], dict[str, object]]:
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = commit.record(step(name))
        except ConnectionError as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    return threads, results


def test_steps_arriving_during_a_write_share_the_next_one() -> None:
    writers = FakeWriters(hold_first=True, refuse=frozenset({"w3"}))
    commit = GroupCommit(writers.one, writers.many)
    first, results = _record_in_threads(commit, ["w0"])
    assert writers.entered.wait(WAIT)
    others, more = _record_in_threads(commit, ["w1", "w2", "w3", "w4"])
    wait_until(lambda: commit.queued() == 4, what="four queued steps")
    writers.release.set()
    for thread in first + others:
        thread.join(WAIT)
    results.update(more)
    assert writers.singles == ["w0"]
    assert len(writers.batches) == 1
    assert sorted(writers.batches[0]) == ["w1", "w2", "w3", "w4"]
    assert results == {"w0": True, "w1": True, "w2": True, "w3": False, "w4": True}
    assert commit.record(step("after")) is True  # the lead was given back
    assert writers.singles[-1] == "after"


def test_a_failed_batch_raises_in_every_waiter_and_the_next_write_proceeds() -> None:
    writers = FakeWriters(hold_first=True)
    writers.fail_batches = True
    commit = GroupCommit(writers.one, writers.many)
    first, results = _record_in_threads(commit, ["w0"])
    assert writers.entered.wait(WAIT)
    others, more = _record_in_threads(commit, ["w1", "w2"])
    wait_until(lambda: commit.queued() == 2, what="two queued steps")
    writers.release.set()
    for thread in first + others:
        thread.join(WAIT)
    results.update(more)
    assert results["w0"] is True
    assert all(isinstance(results[n], ConnectionError) for n in ("w1", "w2"))
    # Each waiter raised an instance of its own (tracebacks do not tangle), caused by the one.
    assert results["w1"] is not results["w2"]
    assert results["w1"].__cause__ is results["w2"].__cause__  # type: ignore[union-attr]
    assert commit.record(step("after")) is True


def test_a_batch_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_commit, "MAX_BATCH", 2)
    writers = FakeWriters(hold_first=True)
    commit = GroupCommit(writers.one, writers.many)
    first, results = _record_in_threads(commit, ["w0"])
    assert writers.entered.wait(WAIT)
    others, more = _record_in_threads(commit, ["w1", "w2", "w3"])
    wait_until(lambda: commit.queued() == 3, what="three queued steps")
    writers.release.set()
    for thread in first + others:
        thread.join(WAIT)
    results.update(more)
    assert all(results[n] is True for n in ("w0", "w1", "w2", "w3"))
    # w1 leads with one queued step; the one left over is written after it, alone.
    assert [len(b) for b in writers.batches] == [2]
    assert len(writers.singles) == 2


def test_a_batch_is_bounded_by_its_payload_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_commit, "MAX_BATCH_BYTES", 3)  # each step's output is 1 byte
    writers = FakeWriters(hold_first=True)
    commit = GroupCommit(writers.one, writers.many)
    first, results = _record_in_threads(commit, ["w0"])
    assert writers.entered.wait(WAIT)
    others, more = _record_in_threads(commit, ["w1", "w2", "w3", "w4", "w5"])
    wait_until(lambda: commit.queued() == 5, what="five queued steps")
    writers.release.set()
    for thread in first + others:
        thread.join(WAIT)
    results.update(more)
    assert all(results[f"w{n}"] is True for n in range(6))
    assert all(len(batch) <= 3 for batch in writers.batches)
    assert sum(len(b) for b in writers.batches) + len(writers.singles) == 6
