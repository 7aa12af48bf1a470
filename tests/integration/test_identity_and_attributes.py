"""DBOS's identity (RBAC) and workflow attributes: who a workflow acts for is recorded and
kept through recovery; attributes are set at start, filtered on and updated; management calls
in workflow code are recorded as steps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure import (
    DBOS,
    DBOSConfiguredInstance,
    DBOSContextEnsure,
    DBOSContextSetAuth,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from perdure.error import DBOSException, DBOSNotAuthorizedError
from tests.integration.system_tables import mark_pending, relaunch


def test_required_roles_check_the_identity_a_workflow_was_started_with(
    dbos: type[DBOS], db_url: str
) -> None:
    seen: list[tuple[str | None, list[str] | None, str | None]] = []

    @DBOS.workflow()
    @DBOS.required_roles(["admin", "ops"])
    def privileged() -> str:
        seen.append((DBOS.authenticated_user, DBOS.authenticated_roles, DBOS.assumed_role))
        return "done"

    @DBOS.workflow()
    def child_of_privileged() -> str:
        return privileged()

    with pytest.raises(DBOSNotAuthorizedError, match="without an authenticated identity"):
        privileged()
    with DBOSContextSetAuth("bob", ["viewer"]), pytest.raises(DBOSNotAuthorizedError):
        privileged()
    with DBOSContextSetAuth("ann", ["viewer", "ops"]), SetWorkflowID("priv-1"):
        assert privileged() == "done"
    with DBOSContextSetAuth("ann", ["ops"]), SetWorkflowID("priv-2"):
        assert child_of_privileged() == "done"  # the child acts for the parent's identity
    assert seen == [("ann", ["viewer", "ops"], "ops"), ("ann", ["ops"], "ops")]
    status = DBOS.get_workflow_status("priv-1")
    assert status is not None
    assert (status.authenticated_user, status.authenticated_roles) == ("ann", ["viewer", "ops"])
    assert DBOS.authenticated_user is None  # outside the blocks: nobody

    # Recovery runs outside any block, yet acts for the recorded identity.
    seen.clear()
    mark_pending(db_url, "priv-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("priv-1").get_result() == "done"
    assert seen == [("ann", ["viewer", "ops"], "ops")]


def test_required_roles_over_the_workflow_decorator_end_a_refused_start_in_error(
    dbos: type[DBOS],
) -> None:
    runs: list[str] = []
    queue = DBOS.register_queue("roles_over_workflow")

    @DBOS.required_roles(["admin"])  # DBOS code often puts it outside @DBOS.workflow()
    @DBOS.workflow()
    def guarded(tag: str) -> str:
        runs.append(tag)
        return tag

    with DBOSContextSetAuth("bob", ["reader"]):
        started = DBOS.start_workflow(guarded, "started")
        queued = queue.enqueue(guarded, "queued")
        with pytest.raises(DBOSNotAuthorizedError):
            guarded("called")
    unauthenticated = queue.enqueue(guarded, "anonymous")
    for handle in (started, queued, unauthenticated):
        with pytest.raises(DBOSNotAuthorizedError):
            handle.get_result()
        assert handle.get_status().status == "ERROR"  # refused for good, not retried
    with DBOSContextSetAuth("ann", ["admin"]):
        assert DBOS.start_workflow(guarded, "allowed").get_result() == "allowed"
        assert queue.enqueue(guarded, "allowed-queued").get_result() == "allowed-queued"
    assert sorted(runs) == ["allowed", "allowed-queued"]


def test_default_required_roles_and_set_authentication(dbos: type[DBOS]) -> None:
    @DBOS.default_required_roles(["admin"])
    class Admin(DBOSConfiguredInstance):
        @DBOS.workflow()
        def reset(self) -> str:
            return f"reset by {DBOS.authenticated_user} as {DBOS.assumed_role}"

        @DBOS.workflow()
        @DBOS.required_roles(["viewer"])
        def look(self) -> str:
            return "looked"

    admin = Admin("main")

    async def as_viewer() -> str:
        DBOS.set_authentication("val", ["viewer"])
        result = await asyncio.to_thread(admin.look)
        with pytest.raises(DBOSNotAuthorizedError):
            await asyncio.to_thread(admin.reset)
        return result

    assert asyncio.run(as_viewer()) == "looked"
    with DBOSContextEnsure(), DBOSContextSetAuth("root", ["admin"]):
        assert admin.reset() == "reset by root as admin"


def test_attributes_are_set_filtered_and_updated(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.workflow()
    def child() -> None: ...

    @DBOS.workflow()
    def job(n: int) -> int:
        DBOS.start_workflow(child).get_result()
        return n

    with SetWorkflowAttributes({"customer": "acme", "tier": 1}), SetWorkflowID("attr-1"):
        job(1)
    with SetWorkflowAttributes({"customer": "zeta", "tier": None}), SetWorkflowID("attr-2"):
        job(2)
    with SetWorkflowID("attr-3"):
        job(3)
    ids = lambda **f: sorted(s.workflow_id for s in DBOS.list_workflows(**f))  # noqa: E731
    assert ids(attributes={"customer": "acme"}) == ["attr-1"]
    assert ids(attributes={"tier": None}) == ["attr-2"]  # a JSON null, not a missing key
    assert ids(attributes={"customer": "acme", "tier": 2}) == []
    assert ids(attributes={}) == ids()  # no condition
    assert DBOS.get_workflow_status("attr-1-1").attributes is None  # type: ignore[union-attr]

    DBOS.update_workflow_attributes("attr-1", {"tier": 2, "new": [1, 2]}, merge=True)
    assert DBOS.get_workflow_status("attr-1").attributes == {  # type: ignore[union-attr]
        "customer": "acme", "tier": 2, "new": [1, 2],
    }  # fmt: skip
    asyncio.run(DBOS.update_workflow_attributes_async("attr-2", {"only": True}))
    assert DBOS.get_workflow_status("attr-2").attributes == {"only": True}  # type: ignore[union-attr]
    DBOS.update_workflow_attributes("attr-2", None)
    assert DBOS.get_workflow_status("attr-2").attributes is None  # type: ignore[union-attr]
    DBOS.update_workflow_attributes("no-such-workflow", {"a": 1})  # left alone, as in DBOS
    with pytest.raises(DBOSException, match="Cannot merge None"):
        DBOS.update_workflow_attributes("attr-1", None, merge=True)
    with pytest.raises(DBOSException, match="must be JSON-serializable"):
        SetWorkflowAttributes({"when": object()})


def test_management_calls_in_workflow_code_are_recorded(dbos: type[DBOS], db_url: str) -> None:
    observed: list[Any] = []

    @DBOS.workflow()
    def target() -> str:
        return "t"

    @DBOS.workflow()
    def inspector() -> str:
        status = DBOS.get_workflow_status("insp-target")
        listed = DBOS.list_workflows(workflow_ids=["insp-target"])
        observed.append((status.status if status else None, len(listed)))
        DBOS.update_workflow_attributes("insp-target", {"seen": True})
        return status.status if status else "none"

    with SetWorkflowID("insp-target"):
        target()
    with SetWorkflowID("insp-1"):
        assert inspector() == "SUCCESS"
    names = [s["function_name"] for s in DBOS.list_workflow_steps("insp-1")]
    assert names == ["DBOS.getStatus", "DBOS.listWorkflows", "DBOS.updateWorkflowAttributes"]
    # A replay sees what the first run saw, although the target is gone by now.
    DBOS.delete_workflow("insp-target")
    mark_pending(db_url, "insp-1")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("insp-1").get_result() == "SUCCESS"
    assert observed == [("SUCCESS", 1), ("SUCCESS", 1)]
