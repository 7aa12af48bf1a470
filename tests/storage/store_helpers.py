"""Builders of the records the storage contract passes, and readers of its raw tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from perdure.storage import Store
from perdure.storage.records import (
    StepRow,
    WorkflowClaim,
    WorkflowRow,
    WorkflowStatusString,
    new_owner_token,
)
from perdure.storage.store import WriteRefused
from tests.integration.system_tables import run_sql

S = WorkflowStatusString
RECV = "DBOS.recv"  # the step name of a receive, as the engine records it
# The tables a workflow's writes touch: a refused write must leave all of them as they were.
WRITTEN_TABLES = (
    ("workflow_status", "workflow_id"),
    ("operation_outputs", "workflow_id, function_id"),
    ("workflow_events", "workflow_id, key"),
    ("workflow_events_history", "workflow_id, function_id, key"),
    ("streams", 'workflow_id, key, "offset"'),
    ("notifications", "message_id"),
    ("recv_waiters", "workflow_id, topic"),
)


def workflow_row(
    workflow_id: str,
    *,
    status: str = S.PENDING,
    name: str = "wf",
    instance_id: str = "i1",
    token: int | None = None,
    created_at: int = 1,
    **changes: Any,
) -> WorkflowRow:
    """A workflow row as the engine records one, with its own fresh owner token by default."""
    row = WorkflowRow(
        workflow_id=workflow_id, status=status, name=name, class_name=None, config_name=None,
        inputs=b"[]", output=None, error=None, serialization="json", executor_id="local",
        instance_id=instance_id, app_version="", queue_name=None, authenticated_user=None,
        created_at=created_at, updated_at=created_at, recovery_attempts=1,
        workflow_timeout_ms=None, workflow_deadline_epoch_ms=None, parent_workflow_id=None,
        forked_from=None, deduplication_id=None, priority=0,
        owner_token=new_owner_token() if token is None else token,
    )  # fmt: skip
    return replace(row, **changes)


def step_row(
    workflow_id: str,
    position: int,
    token: int | None,
    *,
    name: str = "s",
    output: bytes | None = b"1",
    child: str | None = None,
) -> StepRow:
    """The checkpoint of one operation, written by the execution holding ``token``."""
    return StepRow(
        workflow_id=workflow_id, function_id=position, function_name=name, output=output,
        error=None, child_workflow_id=child, serialization="json", started_at_epoch_ms=1,
        completed_at_epoch_ms=2, owner_token=token,
    )  # fmt: skip


def recv_step(workflow_id: str, position: int, token: int) -> StepRow:
    """The step of a ``recv`` at ``position`` (its output is the message, once taken)."""
    return step_row(workflow_id, position, token, name=RECV, output=None)


def start(store: Store, workflow_id: str, **fields: Any) -> int:
    """Start a workflow (PENDING by default); its owner token."""
    row = workflow_row(workflow_id, **fields)
    assert store.start_workflow(row).created
    return row.owner_token


def claim(
    token: int,
    *,
    instance_id: str = "me",
    names: tuple[str, ...] = ("wf",),
    app_version: str = "",
    from_instances: tuple[str, ...] = (),
    workflow_id: str | None = None,
    expected_token: int | None = None,
    limit: int = 100,
) -> WorkflowClaim:
    """A claim of PENDING workflows under ``token``."""
    return WorkflowClaim(
        executor_id="local", instance_id=instance_id, token=token, names=names,
        app_version=app_version, from_instances=from_instances, workflow_id=workflow_id,
        expected_token=expected_token, limit=limit,
    )  # fmt: skip


def take_over(store: Store, workflow_id: str, token: int, *, name: str = "wf") -> int:
    """Claim a workflow still owned by ``token`` for another execution; the new token."""
    new = new_owner_token()
    taken = store.claim_workflows(
        claim(new, names=(name,), workflow_id=workflow_id, expected_token=token)
    )
    assert [r.owner_token for r in taken] == [new]
    return new


def send(
    store: Store,
    message_id: str,
    data: bytes,
    *,
    to: str = "w",
    topic: str | None = "t",
    **fence: Any,
) -> Any:
    """Send ``data`` to ``to`` (a `Delivery`), fenced by ``step=`` or ``owner_token=``."""
    return store.send_message(
        message_id=message_id, destination_id=to, topic=topic, message=data,
        serialization="json", recv_step_name=RECV, **fence,
    )  # fmt: skip


def outcome(write: Callable[[], object]) -> str | None:
    """What a write of an execution reported: an `Unrecorded` reason, or None if it was not
    refused (whether a method returns the reason or raises `WriteRefused` with it)."""
    try:
        result = write()
    except WriteRefused as exc:
        return exc.reason
    return result if isinstance(result, str) else None


def snapshot(db_url: str) -> dict[str, Sequence[Any]]:
    """Every row of the tables a workflow's writes touch, read behind the store's back."""
    return {
        table: [tuple(r) for r in run_sql(db_url, f"SELECT * FROM {{p}}{table} ORDER BY {order}")]
        for table, order in WRITTEN_TABLES
    }


def step_outputs(store: Store, workflow_id: str) -> list[tuple[int, bytes | None]]:
    """The recorded steps of a workflow as (position, output)."""
    return [(s.function_id, s.output) for s in store.load_steps(workflow_id)]
