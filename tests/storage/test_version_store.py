"""Application versions on both backends: registered once, the newest is the latest, and only
the latest claims queued workflows that have no version."""

from __future__ import annotations

from perdure.storage import Store
from tests.storage.test_queue_store import enqueue, take


def names(store: Store) -> list[str]:
    return [v.version_name for v in store.list_versions()]


def test_a_version_is_registered_once_and_the_newest_is_the_latest(store: Store) -> None:
    assert store.list_versions() == []
    assert store.register_version("v1", "id-1")
    assert store.register_version("v2", "id-2")
    assert not store.register_version("v1", "id-other")  # relaunching v1 changes nothing
    assert names(store) == ["v2", "v1"]
    [latest] = store.list_versions(limit=1)
    assert (latest.version_name, latest.version_id) == ("v2", "id-2")
    v2, v1 = store.list_versions()
    assert v2.version_timestamp > v1.version_timestamp
    assert v1.version_id == "id-1"
    assert v1.created_at <= v2.created_at


def test_promoting_makes_a_version_the_latest_even_within_one_millisecond(store: Store) -> None:
    for n in range(5):  # registrations in quick succession, often in the same millisecond
        store.register_version(f"v{n}", f"id-{n}")
    assert names(store) == ["v4", "v3", "v2", "v1", "v0"]
    created = {v.version_name: v.created_at for v in store.list_versions()}
    assert store.promote_version("v1")
    assert store.promote_version("v3")
    assert names(store)[:2] == ["v3", "v1"]
    assert store.promote_version("v3")  # already the latest: stays so
    assert names(store)[0] == "v3"
    assert not store.promote_version("ghost")
    assert {v.version_name: v.created_at for v in store.list_versions()} == created
    assert store.register_version("v5", "id-5")  # a new version is the latest again
    assert names(store)[0] == "v5"


def test_only_the_latest_version_claims_unversioned_workflows(store: Store) -> None:
    enqueue(store, "first", created_at=1)
    enqueue(store, "of-v1", created_at=2, app_version="v1")
    enqueue(store, "second", created_at=3)
    store.register_version("v1", "id-1")
    store.register_version("v2", "id-2")
    # v1 is not the latest: it claims its own workflows only.
    assert [r.workflow_id for r in take(store, app_version="v1")] == ["of-v1"]
    [first] = take(store, app_version="v2", batch=1)
    assert (first.workflow_id, first.app_version) == ("first", "v2")
    store.promote_version("v1")  # a rollback: v1 is the latest again
    assert take(store, app_version="v2") == []
    [second] = take(store, app_version="v1")
    assert (second.workflow_id, second.app_version) == ("second", "v1")


def test_with_no_version_registered_any_process_claims_unversioned_workflows(
    store: Store,
) -> None:
    enqueue(store, "unversioned")
    [row] = take(store, app_version="v7")
    assert (row.workflow_id, row.app_version) == ("unversioned", "v7")
