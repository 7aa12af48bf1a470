"""The replay checker without a database: its report, and the export file's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perdure.error import DBOSException
from perdure.storage.records import StepRow, WorkflowRow
from perdure.testing.histories import (
    EXPORT_FORMAT,
    RecordedWorkflow,
    export_document,
    parse_export,
    read_export,
    write_export,
)
from perdure.testing.verdicts import (
    Divergence,
    Operation,
    ReplayReport,
    Stop,
    WorkflowReplay,
    operation_kind,
)


def row(workflow_id: str, **changes: object) -> WorkflowRow:
    fields: dict[str, object] = {
        "workflow_id": workflow_id, "status": "SUCCESS", "name": "wf", "class_name": None,
        "config_name": None, "inputs": b'{"args": [], "kwargs": {}}', "output": b"\x00\xff",
        "error": None, "serialization": "json", "executor_id": "local", "instance_id": "i",
        "app_version": "v1", "queue_name": None, "authenticated_user": None, "created_at": 1,
        "updated_at": 2, "recovery_attempts": 1, "workflow_timeout_ms": None,
        "workflow_deadline_epoch_ms": None, "parent_workflow_id": None, "forked_from": None,
        "deduplication_id": None, "priority": 0, "owner_token": 42,
    }  # fmt: skip
    fields.update(changes)
    return WorkflowRow(**fields)  # type: ignore[arg-type]


def step(workflow_id: str, position: int, name: str, child: str | None = None) -> StepRow:
    return StepRow(
        workflow_id=workflow_id, function_id=position, function_name=name, output=b"7",
        error=None, child_workflow_id=child, serialization="json", started_at_epoch_ms=3,
        completed_at_epoch_ms=4, owner_token=42,
    )  # fmt: skip


def test_an_export_round_trips_rows_and_payloads_byte_for_byte(tmp_path: Path) -> None:
    history = RecordedWorkflow(
        row("p"),
        (step("p", 2, "b"), step("p", 1, "a", child="p-1")),
        {"p-1": row("p-1", inputs=None, parent_workflow_id="p")},
    )
    path = tmp_path / "export.json"
    assert write_export(path, [history]) == 1
    [read] = read_export(path)
    assert read.row == replace_token(history.row)
    assert [s.function_id for s in read.operations] == [1, 2]  # in position order
    assert read.operations[0] == replace_step(history.operations[1])
    assert read.children == {"p-1": replace_token(history.children["p-1"])}
    document = json.loads(path.read_text())
    assert document["workflows"][0]["status"]["output"] == "AP8="  # base64 of b"\x00\xff"
    assert "owner_token" not in document["workflows"][0]["operations"][0]


def replace_token(r: WorkflowRow) -> WorkflowRow:
    return WorkflowRow(**{**vars(r), "owner_token": 0})


def replace_step(s: StepRow) -> StepRow:
    return StepRow(**{**vars(s), "owner_token": None})


def test_an_export_ignores_unknown_columns_and_refuses_what_it_cannot_read() -> None:
    document = export_document([RecordedWorkflow(row("w"), (step("w", 1, "a"),))])
    document["workflows"][0]["status"]["column_of_a_later_version"] = 1
    assert parse_export(document)[0].row.workflow_id == "w"
    with pytest.raises(DBOSException, match="not a Perdure workflow export"):
        parse_export({"format": "something else"})
    with pytest.raises(DBOSException, match="export of version 2; this Perdure reads version 1"):
        parse_export({"format": EXPORT_FORMAT, "version": 2, "workflows": []})
    broken = json.loads(json.dumps(document))
    broken["workflows"][0]["operations"][0]["output"] = "not base64!"
    with pytest.raises(DBOSException, match=r"operations\[0\]\.output: not base64"):
        parse_export(broken)
    del broken["workflows"][0]["status"]["name"]
    with pytest.raises(DBOSException, match="lacks a required column"):
        parse_export(broken)


def test_the_report_lists_problems_first_and_reads_as_sentences() -> None:
    ends = Stop(3, "the record ends at position 3, where a live run goes on")
    same = WorkflowReplay(
        "a", "wf", "PENDING", "v1", "same", operations=2, recorded_operations=2, stopped=ends
    )
    pay, repay = Operation(2, "pay", "step"), Operation(2, "repay", "step")
    different = WorkflowReplay(
        "b", "wf", "SUCCESS", "", "diverged", divergence=Divergence(2, "different", pay, repay)
    )
    failed = WorkflowReplay("c", "gone", "ERROR", "", "failed", failure="not registered")
    report = ReplayReport([same, different, failed])
    assert not report.ok
    assert report.describe().splitlines() == [
        "Replayed 3 workflow(s) against the current code: 1 same, 1 diverged, 1 failed.",
        "DIVERGED  b  (wf, SUCCESS)",
        "          at position 2: the record has step 'pay', the code asked for step 'repay'",
        "FAILED    c  (gone, ERROR)",
        "          not registered",
        "SAME      a  (wf, PENDING, version v1): 2 operation(s) replayed; the record ends at "
        "position 3, where a live run goes on",
    ]
    assert report.to_json()["workflows"][1]["divergence"]["actual"]["name"] == "repay"
    assert ReplayReport([same]).ok
    missing = Divergence(4, "missing", Operation(4, "ship", "step"), None, "raised KeyError: 'x'")
    assert missing.describe() == (
        "at position 4: the code raised KeyError: 'x' without calling step 'ship', which the "
        "record has"
    )


def test_operation_kinds() -> None:
    assert operation_kind("DBOS.sleep", workflow=False) == "sleep"
    assert operation_kind("DBOS.patch-x", workflow=False) == "patch marker"
    assert operation_kind("DBOS.recv", workflow=False) == "call"
    assert operation_kind("orders.checkout", workflow=True) == "child workflow"
    assert operation_kind("charge", workflow=False) == "step"
