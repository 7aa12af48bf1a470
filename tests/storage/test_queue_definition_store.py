"""Queue definitions: saved (replacing another only as asked), changed in place, deleted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from perdure.storage import Store
from perdure.storage.records import QueueRecord

PLAIN = QueueRecord(
    name="q", concurrency=None, worker_concurrency=None, rate_limit=None, rate_period_sec=None,
    priority_enabled=False, partition_queue=False, polling_interval_sec=1.0,
)  # fmt: skip


def queue(**settings: Any) -> QueueRecord:
    """Queue ``q`` with ``settings``."""
    return replace(PLAIN, **settings)


def test_queue_definitions_are_saved_replaced_and_listed_by_name(store: Store) -> None:
    limited = queue(name="b", concurrency=3, rate_limit=5, rate_period_sec=1.5)
    assert store.save_queue(limited) == limited
    store.save_queue(queue(name="a"))
    replaced = queue(
        name="a", worker_concurrency=2, priority_enabled=True, partition_queue=True,
        partition_concurrency=2, partition_worker_concurrency=1, partition_rate_limit=4,
        partition_rate_period_sec=0.5,
    )  # fmt: skip
    assert store.save_queue(replaced) == replaced
    assert store.list_queues() == [replaced, limited]
    assert store.list_queues(("b", "missing")) == [limited]
    assert store.list_queues(()) == []


def test_a_save_that_must_not_replace_keeps_the_stored_definition(store: Store) -> None:
    stored = store.save_queue(queue(concurrency=1))
    assert store.save_queue(queue(concurrency=2), replace_existing="never") == stored
    assert store.save_queue(queue(name="new", concurrency=2), replace_existing="never") == queue(
        name="new", concurrency=2
    )
    assert store.list_queues(("q",)) == [stored]


def test_only_the_latest_application_version_replaces_a_definition(store: Store) -> None:
    # No version registered yet: any process may replace it.
    store.save_queue(queue(concurrency=1))
    assert store.save_queue(queue(concurrency=2), replace_existing="if_latest", app_version="v1")
    assert store.list_queues()[0].concurrency == 2
    store.register_version("v1", "id-1")
    store.register_version("v2", "id-2")  # registered later: the latest
    kept = store.save_queue(queue(concurrency=3), replace_existing="if_latest", app_version="v1")
    assert kept.concurrency == 2  # an older version of a rolling deploy changes nothing
    newer = store.save_queue(queue(concurrency=4), replace_existing="if_latest", app_version="v2")
    assert newer.concurrency == 4
    # A definition nobody stored yet is stored by any version.
    first = store.save_queue(queue(name="r"), replace_existing="if_latest", app_version="v1")
    assert first == queue(name="r")
    store.promote_version("v1")
    assert (
        store.save_queue(
            queue(concurrency=5), replace_existing="if_latest", app_version="v1"
        ).concurrency
        == 5
    )


def test_a_change_is_read_written_and_returned_in_one_transaction(store: Store) -> None:
    store.save_queue(queue(concurrency=2, worker_concurrency=1))
    seen: list[QueueRecord] = []

    def raise_concurrency(record: QueueRecord) -> QueueRecord:
        seen.append(record)
        return replace(record, concurrency=record.concurrency + 3)

    changed = store.change_queue("q", raise_concurrency)
    assert changed == queue(concurrency=5, worker_concurrency=1)
    assert seen == [queue(concurrency=2, worker_concurrency=1)]
    assert store.list_queues() == [changed]
    assert store.change_queue("missing", raise_concurrency) is None

    def refuse(record: QueueRecord) -> QueueRecord:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        store.change_queue("q", refuse)
    assert store.list_queues() == [changed]


def test_a_deleted_definition_is_gone(store: Store) -> None:
    store.save_queue(queue())
    store.save_queue(queue(name="r"))
    assert store.delete_queue("q")
    assert not store.delete_queue("q")
    assert [r.name for r in store.list_queues()] == ["r"]
