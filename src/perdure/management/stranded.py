"""Stranded workflows: PENDING or ENQUEUED workflows that no live process will run.

A process runs a workflow only if it registers the workflow's function and serves its
application version: a PENDING workflow whose owner died is taken over by a live process of
its version (an unversioned one: of any version) that registers its function; an ENQUEUED one
is dequeued by a live process of its version (an unversioned one: of the latest version) that
registers its function. After a deploy that renamed a workflow, or once every process of an
old version is gone, such workflows wait forever: this module finds them, and says why.

What each process registers and serves comes from its heartbeat row (``executors``); it is
live while its heartbeat is recent and its lock is held (the lock of the calling process's
own instance is never probed: probing releases a lock its own process holds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from perdure.storage.records import ExecutorRecord, WorkflowQuery, WorkflowRow
from perdure.storage.records import WorkflowStatusString as S
from perdure.storage.store import Store

# The default of ``dead_executor_timeout_sec``: a process silent longer than this is dead.
DEFAULT_DEAD_AFTER_SEC = 60.0
# Unfinished workflows are read in pages of this many (their payloads are not read).
PAGE_SIZE = 500

StrandedCause = Literal["no_live_process", "version_not_served", "function_not_registered"]


@dataclass(frozen=True)
class StrandedWorkflow:
    """A PENDING or ENQUEUED workflow no live process will run, and why.

    Attributes:
        workflow_id: The workflow.
        name: Its function's recorded name.
        status: PENDING (its owner is dead, or cannot run it) or ENQUEUED.
        app_version: The application version it belongs to (``""``: unversioned).
        queue_name: Its queue, if any.
        executor_id: The executor that last ran it (or enqueued it).
        created_at: When it was created (epoch ms).
        cause: ``"no_live_process"``, ``"version_not_served"`` or
            ``"function_not_registered"``.
        reason: The cause in words, naming the versions and processes concerned.
    """

    workflow_id: str
    name: str
    status: str
    app_version: str
    queue_name: str | None
    executor_id: str
    created_at: int
    cause: StrandedCause
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON of this workflow and its reason."""
        return {
            "workflow_id": self.workflow_id,
            "name": self.name,
            "status": self.status,
            "app_version": self.app_version,
            "queue_name": self.queue_name,
            "executor_id": self.executor_id,
            "created_at": self.created_at,
            "cause": self.cause,
            "reason": self.reason,
        }


def live_executors(
    store: Store, *, dead_after_sec: float, this_instance: str | None = None
) -> list[ExecutorRecord]:
    """The processes alive now: a recent heartbeat, and their lock held (``this_instance``,
    the caller's own, is live without a probe)."""
    recent = [r for r in store.list_executors() if r.silent_ms <= dead_after_sec * 1000]
    probed = tuple(
        r.lock_key for r in recent if r.lock_key is not None and r.instance_id != this_instance
    )
    free = store.free_lock_keys(probed) if probed else set()
    return [r for r in recent if r.instance_id == this_instance or r.lock_key not in free]


def find_stranded(
    store: Store,
    *,
    dead_after_sec: float = DEFAULT_DEAD_AFTER_SEC,
    this_instance: str | None = None,
    limit: int | None = None,
) -> list[StrandedWorkflow]:
    """Every stranded workflow (the first ``limit``), oldest first.

    Args:
        store: The system store.
        dead_after_sec: A process silent longer than this is dead (the application's
            ``dead_executor_timeout_sec``).
        this_instance: The calling process's own instance ID, if it is a launched one.
        limit: At most this many.
    """
    live = live_executors(store, dead_after_sec=dead_after_sec, this_instance=this_instance)
    latest = store.list_versions(limit=1)
    judge = _Judge(live, latest[0].version_name if latest else None)
    found: list[StrandedWorkflow] = []
    offset = 0
    while limit is None or len(found) < limit:
        page = store.list_workflows(
            WorkflowQuery(
                statuses=(S.PENDING, S.ENQUEUED), limit=PAGE_SIZE, offset=offset,
                with_inputs=False, with_outputs=False,
            )
        )  # fmt: skip
        for row in page:
            why = judge.stranded(row)
            if why is not None:
                found.append(_stranded(row, *why))
        if len(page) < PAGE_SIZE:
            break
        offset += PAGE_SIZE
    return found if limit is None else found[:limit]


def _stranded(row: WorkflowRow, cause: StrandedCause, reason: str) -> StrandedWorkflow:
    return StrandedWorkflow(
        workflow_id=row.workflow_id, name=row.name, status=str(row.status),
        app_version=row.app_version, queue_name=row.queue_name, executor_id=row.executor_id,
        created_at=row.created_at, cause=cause, reason=reason,
    )  # fmt: skip


class _Judge:
    """Whether live processes will run a workflow, given what each serves and registers."""

    def __init__(self, live: list[ExecutorRecord], latest_version: str | None) -> None:
        self.live = live
        self.by_instance = {r.instance_id: r for r in live}
        self.latest = latest_version
        self.names = {r.instance_id: _names(r) for r in live}

    def registers(self, record: ExecutorRecord, name: str) -> bool:
        """Whether the process registers ``name`` (unknown, for an older Perdure: yes)."""
        names = self.names[record.instance_id]
        return names is None or name in names

    def stranded(self, row: WorkflowRow) -> tuple[StrandedCause, str] | None:
        """Why no live process will run ``row``'s workflow; None if one will."""
        owner = self.by_instance.get(row.instance_id) if row.status == S.PENDING else None
        if owner is not None:  # running there, unless its owner cannot run it
            if self.registers(owner, row.name):
                return None
            return "function_not_registered", (
                f"its owner (process {owner.instance_id} on {owner.hostname}, executor "
                f"{owner.executor_id!r}) does not register workflow {row.name!r}"
            )
        if not self.live:
            return "no_live_process", "no live process: launch one of its version"
        serving, version_text = self._serving(row)
        if not serving:
            served = ", ".join(sorted({repr(r.app_version) for r in self.live}))
            return "version_not_served", (
                f"no live process serves {version_text} (live versions: {served})"
            )
        if not any(self.registers(r, row.name) for r in serving):
            return "function_not_registered", (
                f"no live process of {version_text} registers workflow {row.name!r}"
            )
        return None

    def _serving(self, row: WorkflowRow) -> tuple[list[ExecutorRecord], str]:
        """The live processes that would claim it, and its version in words."""
        version = row.app_version
        if version:
            return [r for r in self.live if r.app_version == version], f"version {version!r}"
        if row.status == S.PENDING:  # an unversioned PENDING workflow: any version takes it
            return list(self.live), "any version"
        text = f"the latest version ({self.latest!r}), which dequeues unversioned workflows"
        return [r for r in self.live if r.app_version == self.latest], text


def _names(record: ExecutorRecord) -> frozenset[str] | None:
    if record.workflow_names is None:
        return None
    return frozenset(str(n) for n in json.loads(record.workflow_names))
