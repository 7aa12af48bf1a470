"""`WorkflowStatusString`: an Enum, as in DBOS, whose members are the stored strings."""

from __future__ import annotations

from enum import Enum

from perdure import WorkflowStatusString as S


def test_workflow_status_string_is_an_enum_of_the_strings() -> None:
    assert issubclass(S, Enum)
    assert [s.value for s in S] == [
        "PENDING", "SUCCESS", "ERROR", "ENQUEUED", "DELAYED", "CANCELLED",
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
    ]  # fmt: skip
    assert S.ENQUEUED.value == S.ENQUEUED.name == "ENQUEUED"
    assert S("ERROR") is S.ERROR
    assert S.SUCCESS == "SUCCESS"  # compares with a stored status
    assert f"{S.SUCCESS}" == str(S.SUCCESS) == "SUCCESS"
