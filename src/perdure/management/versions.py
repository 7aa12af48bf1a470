"""Application versions: each launch registers its own; the latest one is in charge.

What DBOS Transact records and what "latest" changes, on Perdure's storage: every launch
registers its ``application_version`` (``""`` when none is configured) the first time it is
seen, which makes it the latest; ``set_latest_application_version`` makes an older one the
latest again (a rollback). The latest version alone dequeues workflows enqueued without a
version (a client's, by default) and starts schedule ticks. Recovery is unchanged: a process
resumes workflows of its own version.
"""

from __future__ import annotations

import uuid

from typing_extensions import TypedDict

from perdure.error import DBOSException
from perdure.logs import get_logger
from perdure.storage.records import VersionRecord
from perdure.storage.store import Store

logger = get_logger(__name__)


class VersionInfo(TypedDict):
    """An application version, as ``DBOS.list_application_versions`` returns it (DBOS's keys).

    Times are epoch milliseconds: ``created_at`` when it was first registered,
    ``version_timestamp`` what orders versions (the newest is the latest). Perdure keeps one
    application per system database, so ``application_name`` is always None.
    """

    version_id: str
    version_name: str
    version_timestamp: int
    created_at: int
    application_name: str | None


def register_version(store: Store, version_name: str) -> None:
    """Record the version a process launches with; warn if it is not the latest."""
    if store.register_version(version_name, str(uuid.uuid4())):
        logger.info("Registered application version %r as the latest", version_name)
        return
    latest = store.list_versions(limit=1)
    if latest and latest[0].version_name != version_name:
        logger.warning(
            "Application version %r is not the latest version (%r is): this process resumes "
            "its own workflows, but leaves unversioned queued workflows and schedule ticks to "
            "the latest version. DBOS.set_latest_application_version(%r) makes it the latest.",
            version_name,
            latest[0].version_name,
            version_name,
        )


def list_application_versions(store: Store) -> list[VersionInfo]:
    """Every registered version, the latest first."""
    return [_info(r) for r in store.list_versions()]


def get_latest_application_version(store: Store) -> VersionInfo:
    """The latest version.

    Raises:
        DBOSException: No version is registered yet (no process has launched on it).
    """
    latest = store.list_versions(limit=1)
    if not latest:
        raise DBOSException(
            "No application versions found: none is registered until a process launches on "
            "this system database (DBOS.launch() registers its application_version)."
        )
    return _info(latest[0])


def set_latest_application_version(
    store: Store, version_name: str, *, application_name: str | None = None
) -> None:
    """Make a registered version the latest (its timestamp becomes the newest).

    Raises:
        DBOSException: No such version is registered, or ``application_name`` is set.
    """
    if application_name is not None:
        raise DBOSException(
            "set_latest_application_version: Perdure keeps one application per system "
            "database, so application_name is not supported; remove it."
        )
    if not isinstance(version_name, str):
        raise DBOSException(f"A version name is a string, not {version_name!r}.")
    if not store.promote_version(version_name):
        known = ", ".join(repr(v.version_name) for v in store.list_versions()) or "none"
        raise DBOSException(
            f"Cannot make {version_name!r} the latest application version: it is not "
            f"registered (registered: {known}). A version is registered when a process first "
            "launches with it."
        )


def _info(record: VersionRecord) -> VersionInfo:
    return VersionInfo(
        version_id=record.version_id,
        version_name=record.version_name,
        version_timestamp=record.version_timestamp,
        created_at=record.created_at,
        application_name=None,
    )
