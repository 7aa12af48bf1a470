"""The application-version classmethods of `DBOS`: which versions ran, and which is the latest."""

from __future__ import annotations

import asyncio

from perdure.facade.base import FacadeBase
from perdure.management import versions
from perdure.management.versions import VersionInfo

__all__ = ["VersionInfo", "VersionsFacade"]


class VersionsFacade(FacadeBase):
    """Application versions, as DBOS Transact records them (see `perdure.management.versions`).

    Every launch registers its ``application_version``; the latest version alone dequeues
    workflows enqueued without a version and starts schedule ticks.
    """

    @classmethod
    def list_application_versions(cls) -> list[VersionInfo]:
        """Every registered application version, the latest first."""
        return versions.list_application_versions(cls._require_runtime().engine.store)

    @classmethod
    def get_latest_application_version(cls) -> VersionInfo:
        """The latest application version.

        Raises:
            DBOSException: None is registered.
        """
        return versions.get_latest_application_version(cls._require_runtime().engine.store)

    @classmethod
    def set_latest_application_version(
        cls, version_name: str, *, application_name: str | None = None
    ) -> None:
        """Make a registered version the latest, e.g. to roll back to it.

        Processes of that version then dequeue unversioned workflows and start schedule
        ticks (others see the change within ``scheduler_polling_interval_sec``).

        Raises:
            DBOSException: The version is not registered, or ``application_name`` is set
                (Perdure keeps one application per system database).
        """
        runtime = cls._require_runtime()
        versions.set_latest_application_version(
            runtime.engine.store, version_name, application_name=application_name
        )
        if runtime.scheduler is not None:
            runtime.scheduler.changed()

    @classmethod
    async def list_application_versions_async(cls) -> list[VersionInfo]:
        """Async twin of `list_application_versions`."""
        return await asyncio.to_thread(cls.list_application_versions)

    @classmethod
    async def get_latest_application_version_async(cls) -> VersionInfo:
        """Async twin of `get_latest_application_version`."""
        return await asyncio.to_thread(cls.get_latest_application_version)

    @classmethod
    async def set_latest_application_version_async(
        cls, version_name: str, *, application_name: str | None = None
    ) -> None:
        """Async twin of `set_latest_application_version`."""
        await asyncio.to_thread(
            cls.set_latest_application_version, version_name, application_name=application_name
        )
