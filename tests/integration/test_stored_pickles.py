"""Whoever can write Perdure's rows cannot make a process run code by storing a pickle.

Every payload column is overwritten with a pickle whose unpickling creates a file. A process
with the default (JSON) config refuses each row with an error naming the workflow and the
option; a process with signed pickle refuses a forged signature and an unsigned row alike.
The file never appears.
"""

from __future__ import annotations

import contextlib
import pickle
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from perdure import DBOS, SetWorkflowID
from perdure.cli.main import cli
from perdure.error import DBOSSerializationError
from tests.fixtures.app import make_config
from tests.integration.system_tables import run_sql

KEY = "a signing key of 32 bytes, test!"


class Touch:
    """Unpickling this creates a file: the proof that a row ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def forged(path: Path, fmt: str) -> bytes:
    data = pickle.dumps(Touch(path))
    assert b"touch" in data  # the pickle calls Path.touch when loaded
    if fmt == "signed-pickle":
        return secrets.token_bytes(32) + data  # a MAC made without the key
    return data


# (config of the reading process, format written into the rows, what the error says)
CASES = {
    "json-reads-pickle": ({}, "pickle", 'configured with serializer="pickle"'),
    "signed-reads-forged-mac": (
        {"serializer": "pickle", "pickle_signing_key": KEY},
        "signed-pickle",
        "signature does not verify",
    ),
    "signed-reads-unsigned": (
        {"serializer": "pickle", "pickle_signing_key": KEY},
        "pickle",
        "pickle_signing_key is configured",
    ),
}


@pytest.fixture
def relaunch_as(db_url: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    def launch(overrides: dict[str, Any]) -> None:
        DBOS.destroy()
        DBOS(config=make_config(db_url, **overrides))
        DBOS.launch()

    yield launch
    DBOS.destroy(destroy_registry=True)


@pytest.mark.parametrize("case", CASES)
def test_a_stored_pickle_never_runs_code(
    case: str, db_url: str, tmp_path: Path, relaunch_as: Callable[[dict[str, Any]], None]
) -> None:
    config, fmt, says = CASES[case]
    relaunch_as(config)

    @DBOS.step()
    def one() -> int:
        return 1

    @DBOS.step()
    def fails() -> None:
        raise ValueError("recorded")

    @DBOS.workflow()
    def victim(x: int) -> int:
        with contextlib.suppress(ValueError):
            fails()
        DBOS.set_event("k", x)
        DBOS.write_stream("s", x)
        return one() + x

    @DBOS.workflow()
    def errored() -> None:
        raise ValueError("workflow error")

    @DBOS.workflow()
    def inbox() -> object:
        return DBOS.recv("t", timeout_seconds=30)

    @DBOS.workflow()
    def ticking(scheduled: object, context: object) -> None:
        pass

    DBOS.create_schedule(
        schedule_name="nightly", workflow_fn=ticking, schedule="0 3 * * *", context={"a": 1}
    )
    with SetWorkflowID("victim"):
        victim(1)
    with SetWorkflowID("errored"), pytest.raises(ValueError, match="workflow error"):
        errored()

    marker = tmp_path / "code-ran"
    bomb = forged(marker, fmt)
    for table, columns, where in (
        ("workflow_status", ("inputs", "output", "error"), "workflow_id IN ('victim', 'errored')"),
        ("operation_outputs", ("output", "error"), "workflow_id = 'victim'"),
        ("workflow_events", ("value",), "workflow_id = 'victim'"),
        ("streams", ("value",), "workflow_id = 'victim'"),
        ("schedules", ("context",), "schedule_name = 'nightly'"),
    ):
        sets = ", ".join(f"{c} = CASE WHEN {c} IS NULL THEN NULL ELSE :b END" for c in columns)
        changed = run_sql(
            db_url,
            f"UPDATE {{p}}{table} SET {sets}, serialization = :f WHERE {where} RETURNING 1",
            b=bomb,
            f=fmt,
        )
        assert changed, table
    run_sql(
        db_url,
        "INSERT INTO {p}notifications (message_id, destination_id, topic, message, "
        "serialization, created_at_epoch_ms) VALUES ('forged', 'inbox', 't', :b, :f, 1)",
        b=bomb,
        f=fmt,
    )

    reads: dict[str, Callable[[], object]] = {
        "victim": lambda: DBOS.retrieve_workflow("victim").get_result(),
        "victim ": lambda: DBOS.get_workflow_status("victim"),
        "errored": lambda: DBOS.retrieve_workflow("errored").get_result(),
        "victim  ": lambda: DBOS.get_event("victim", "k", timeout_seconds=0),
        "  victim": lambda: list(DBOS.read_stream("victim", "s")),
    }
    for workflow_id, read in reads.items():
        with pytest.raises(DBOSSerializationError, match=says) as refused:
            read()
        assert repr(workflow_id.strip()) in str(refused.value)
        assert not marker.exists()
    # A listing, as in DBOS, logs what it cannot read and shows it as stored: still unrun.
    listed = DBOS.list_workflow_steps("victim")
    assert listed
    assert all(s["output"] is None or isinstance(s["output"], (bytes, str)) for s in listed)
    assert not marker.exists()
    with pytest.raises(DBOSSerializationError, match=says) as refused:
        DBOS.list_schedules()
    assert "'nightly'" in str(refused.value)

    # A workflow receiving the forged message fails with the same clear error.
    with SetWorkflowID("inbox"):
        handle = DBOS.start_workflow(inbox)
    with pytest.raises(DBOSSerializationError, match=says) as refused:
        handle.get_result()
    assert "'inbox'" in str(refused.value)

    # The command line never unpickles: it shows the rows as unreadable.
    shown = CliRunner().invoke(cli, ["--db", db_url, "workflow", "get", "victim", "--json"])
    assert shown.exit_code == 0, shown.output
    steps = CliRunner().invoke(cli, ["--db", db_url, "workflow", "steps", "victim", "--json"])
    assert steps.exit_code == 0, steps.output
    assert not marker.exists()
