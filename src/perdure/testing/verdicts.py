"""What a replay found: for each workflow, the same operations, the first divergence, or why
it could not be replayed; and the report of a whole run, for people and for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from perdure.execution.coordination import PATCH_PREFIX
from perdure.execution.steps import SLEEP_STEP_NAME

Verdict = Literal["same", "diverged", "failed"]
# How the code and the record differ at the first position where they do.
DivergenceKind = Literal["different", "extra", "missing"]


def operation_kind(name: str, *, workflow: bool) -> str:
    """A readable kind for an operation named ``name`` (``workflow``: it starts a child).

    Steps and transactions are both recorded under their function's name: both are "step".
    """
    if workflow:
        return "child workflow"
    if name.startswith(PATCH_PREFIX):
        return "patch marker"
    if name == SLEEP_STEP_NAME:
        return "sleep"
    if name.startswith("DBOS."):
        return "call"
    return "step"


@dataclass(frozen=True)
class Operation:
    """One operation at one position: its recorded name and what kind of operation it is."""

    position: int
    name: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class Divergence:
    """The first position where the current code and the record part ways.

    Attributes:
        position: The operation's position (counting from 1, as ``DBOS.step_id`` does).
        kind: ``"different"`` (the code asked for another operation than the recorded
            one), ``"extra"`` (the code asked for an operation after the end of a finished
            workflow's record) or ``"missing"`` (the code returned, or raised, without
            asking for an operation the record holds).
        expected: The recorded operation there (None for ``"extra"``).
        actual: The operation the code asked for (None for ``"missing"``).
        detail: How the body ended, for ``"missing"`` (it returned, or raised an error).
    """

    position: int
    kind: DivergenceKind
    expected: Operation | None
    actual: Operation | None
    detail: str = ""

    def describe(self) -> str:
        """One sentence saying where and how the code diverges."""
        where = f"at position {self.position}"
        if self.kind == "different":
            return f"{where}: the record has {self.expected}, the code asked for {self.actual}"
        if self.kind == "extra":
            return (
                f"{where}: the code asked for {self.actual}, but the recorded run ended before it"
            )
        ended = self.detail or "returned"
        return f"{where}: the code {ended} without calling {self.expected}, which the record has"


@dataclass(frozen=True)
class Stop:
    """Where a replay of an unfinished record stopped: a live run would go on from there.

    Attributes:
        position: The first position the record does not hold.
        reason: Why the replay stops there, in words.
    """

    position: int
    reason: str


@dataclass(frozen=True)
class WorkflowReplay:
    """The replay of one recorded workflow against the current code.

    Attributes:
        workflow_id: The workflow.
        name: Its function's recorded name.
        status: Its recorded status.
        app_version: The application version it was recorded under.
        verdict: ``"same"`` (the code takes the recorded operations), ``"diverged"`` (see
            ``divergence``) or ``"failed"`` (it could not be replayed: see ``failure``).
        operations: How many recorded operations the code asked for, as recorded.
        recorded_operations: How many operations the record holds.
        divergence: The first divergence, if the verdict is ``"diverged"``.
        stopped: For an unfinished workflow, where the record ended and a live run goes on.
        failure: Why it could not be replayed, if the verdict is ``"failed"``.
        outcome: How the replayed body ended: ``"returned"``, ``"raised <error>"``, or
            ``"stopped"`` (at a divergence, or where the record ends).
    """

    workflow_id: str
    name: str
    status: str
    app_version: str
    verdict: Verdict
    operations: int = 0
    recorded_operations: int = 0
    divergence: Divergence | None = None
    stopped: Stop | None = None
    failure: str | None = None
    outcome: str = "stopped"

    @property
    def can_take(self) -> bool:
        """Whether the current code takes this workflow as recorded (``verdict == "same"``)."""
        return self.verdict == "same"

    def describe(self) -> str:
        """A line saying what the replay found, and a second one for a divergence or failure."""
        head = (
            f"{self.verdict.upper():<8}  {self.workflow_id}  ({self.name}, {self.status}"
            + (f", version {self.app_version}" if self.app_version else "")
            + ")"
        )
        if self.divergence is not None:
            return f"{head}\n          {self.divergence.describe()}"
        if self.failure is not None:
            return f"{head}\n          {self.failure}"
        text = f"{head}: {self.operations} operation(s) replayed"
        if self.stopped is not None:
            text += f"; {self.stopped.reason}"
        return text

    def to_json(self) -> dict[str, Any]:
        """Plain JSON of this result (for ``--json`` and scripts)."""
        divergence = None
        if self.divergence is not None:
            d = self.divergence
            divergence = {
                "position": d.position,
                "kind": d.kind,
                "expected": _operation_json(d.expected),
                "actual": _operation_json(d.actual),
                "message": d.describe(),
            }
        stopped = None
        if self.stopped is not None:
            stopped = {"position": self.stopped.position, "reason": self.stopped.reason}
        return {
            "workflow_id": self.workflow_id,
            "name": self.name,
            "status": self.status,
            "app_version": self.app_version,
            "verdict": self.verdict,
            "operations": self.operations,
            "recorded_operations": self.recorded_operations,
            "divergence": divergence,
            "stopped": stopped,
            "failure": self.failure,
            "outcome": self.outcome,
        }


def _operation_json(operation: Operation | None) -> dict[str, Any] | None:
    if operation is None:
        return None
    return {"position": operation.position, "name": operation.name, "kind": operation.kind}


@dataclass(frozen=True)
class ReplayReport:
    """The replay of every selected workflow, in the order they were read (newest first).

    Attributes:
        results: One `WorkflowReplay` per workflow.
    """

    results: list[WorkflowReplay] = field(default_factory=list)

    @property
    def diverged(self) -> list[WorkflowReplay]:
        """The workflows whose replay diverged."""
        return [r for r in self.results if r.verdict == "diverged"]

    @property
    def failed(self) -> list[WorkflowReplay]:
        """The workflows that could not be replayed."""
        return [r for r in self.results if r.verdict == "failed"]

    @property
    def ok(self) -> bool:
        """Whether every workflow replayed the same (what CI should require)."""
        return all(r.verdict == "same" for r in self.results)

    def result(self, workflow_id: str) -> WorkflowReplay:
        """The result for ``workflow_id``.

        Raises:
            KeyError: It was not replayed.
        """
        for r in self.results:
            if r.workflow_id == workflow_id:
                return r
        raise KeyError(workflow_id)

    def describe(self) -> str:
        """The report for a person: a summary line, then problems first, then the rest."""
        counts = {v: sum(r.verdict == v for r in self.results) for v in ("same", "diverged")}
        failed = len(self.results) - counts["same"] - counts["diverged"]
        lines = [
            f"Replayed {len(self.results)} workflow(s) against the current code: "
            f"{counts['same']} same, {counts['diverged']} diverged, {failed} failed."
        ]
        ordered = self.diverged + self.failed + [r for r in self.results if r.can_take]
        lines.extend(r.describe() for r in ordered)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON of the report (for ``--json`` and scripts)."""
        return {
            "ok": self.ok,
            "replayed": len(self.results),
            "diverged": len(self.diverged),
            "failed": len(self.failed),
            "workflows": [r.to_json() for r in self.results],
        }
