"""Crashes simulated in-process: a workflow dies at a named step, then recovery resumes it."""

from __future__ import annotations

import inspect
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, cast, get_args

from perdure.dbos import DBOS
from perdure.error import DBOSBaseException
from perdure.execution.handles import WorkflowHandle
from perdure.execution.recovery import take_over
from perdure.execution.workflow import ActiveWorkflow, WorkflowEngine
from perdure.logs import get_logger
from perdure.storage.records import ExecutorRecord, StepRow, WorkflowClaim
from perdure.storage.store import Store

logger = get_logger(__name__)

CrashPoint = Literal["before_checkpoint", "after_checkpoint"]

# The frames of a workflow execution: their ``active`` local is the execution.
_EXECUTING = frozenset({WorkflowEngine.execute.__code__, WorkflowEngine.execute_async.__code__})


class SimulatedCrash(DBOSBaseException):
    """The in-process stand-in for a process dying at a step (see `crash_at`).

    A BaseException, so that ``except Exception`` in workflow code does not swallow it: the
    execution stops there and records nothing more, as a killed process would. It reaches
    whoever called the workflow directly (`crash_at` swallows it at the end of its block).

    Attributes:
        workflow_id: The workflow that reached the step.
        step: The name recorded for the step.
    """

    def __init__(self, workflow_id: str, step: str) -> None:
        self.workflow_id = workflow_id
        self.step = step
        super().__init__(
            f"Simulated crash of workflow {workflow_id!r} at step {step!r}: its execution "
            "stopped as if its process had died. Call recover() on the crash_at(...) object "
            "to resume it."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.workflow_id, self.step), dict(vars(self)))


class Crash:
    """One crash planned by `crash_at`: where it strikes, what it stopped, and the recovery.

    Attributes:
        step: The step name it waits for.
        when: ``"before_checkpoint"`` or ``"after_checkpoint"`` (see `crash_at`).
        executor_id: The executor ID of the process that "dies": the crashed workflows are
            its own until `recover`.
        workflow_ids: The workflows the crash stopped: the one at the step first, then those
            that called it directly (a child called like a function stops its caller too).
    """

    def __init__(
        self,
        engine: WorkflowEngine,
        step: str,
        *,
        when: CrashPoint,
        workflow_id: str | None,
    ) -> None:
        self.step = step
        self.when = when
        self.workflow_ids: list[str] = []
        self.executor_id = f"{engine.executor_id}-crashed"
        self._engine = engine
        self._workflow_id = workflow_id
        self._instance_id = f"crashed-{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._armed = True
        self._striking = False
        self._fired = threading.Event()
        self._error: SimulatedCrash | None = None

    @property
    def fired(self) -> bool:
        """Whether a workflow reached the step and crashed there."""
        return self._fired.is_set()

    def wait(self, timeout: float = 10.0) -> str:
        """Block until the crash happened; the ID of the workflow that reached the step.

        Raises:
            AssertionError: No workflow reached the step within ``timeout`` (real) seconds.
        """
        if not self._fired.wait(timeout):
            raise AssertionError(
                f"No workflow reached step {self.step!r} within {timeout}s, so nothing crashed. "
                "Check the step name (DBOS.list_workflow_steps shows the recorded names) and "
                "that the workflow was started inside the crash_at block."
            )
        return self.workflow_ids[0]

    def recover(self, timeout: float = 10.0) -> list[WorkflowHandle[Any]]:
        """Recover the crashed workflows in this process, as a live process recovers those
        of a dead one; their handles (`workflow_ids` order).

        The recovery claims every PENDING workflow of the dead process under a new owner token
        and resumes it from its recorded steps, in the background (``get_result`` on a
        handle waits for it): the code path of a takeover, with this process found alive.

        Raises:
            AssertionError: The crash has not happened (see `wait`).
        """
        self.wait(timeout)
        engine = self._engine
        resumed = take_over(engine, (self._instance_id,))
        logger.info(
            "Recovered %d workflow(s) of the process that crashed at step %r: %s",
            len(resumed), self.step, ", ".join(resumed) or "none (recovered already)",
        )  # fmt: skip
        # Nothing of it is left: its row goes, as a takeover forgets a dead process.
        engine.store.forget_instance(self._instance_id, silent_for_ms=0)
        return [WorkflowHandle(engine, workflow_id) for workflow_id in self.workflow_ids]

    # -- striking (on the workflow's thread) --------------------------------------------------

    def _claims(self, step: StepRow) -> bool:
        """Whether recording ``step`` is where this crash strikes (once)."""
        name = step.function_name
        if name != self.step and not name.endswith("." + self.step):
            return False
        if self._workflow_id is not None and step.workflow_id != self._workflow_id:
            return False
        with self._lock:
            if not self._armed or self._striking:
                return False
            self._striking = True
            return True

    def _let_pass(self) -> None:
        """The step was not recorded (its workflow is no longer this execution's): no crash."""
        with self._lock:
            self._striking = False

    def _disarm(self) -> None:
        with self._lock:
            self._armed = False

    def _strike(self, store: Store, step: StepRow) -> SimulatedCrash:
        """Make the executions on this thread's stack the dead process's; the signal to raise.

        Each is handed over by the compare-and-set every claim makes, under its own owner
        token (so no recovery attempt is counted): the execution that dies is the one that ran.
        """
        self._register_dead_process(store)
        engine = self._engine
        executions = _executions_on_stack(engine)
        if not executions and step.owner_token is not None:  # no frames to read (not CPython)
            executions = [(step.workflow_id, step.owner_token)]
        names = engine.registry.workflow_names()
        for workflow_id, token in executions:
            claim = WorkflowClaim(
                executor_id=self.executor_id,
                instance_id=self._instance_id,
                token=token,
                names=names,
                app_version=engine.app_version,
                workflow_id=workflow_id,
                expected_token=token,
                limit=1,
            )
            if store.claim_workflows(claim):
                self.workflow_ids.append(workflow_id)
        if not self.workflow_ids:
            self.workflow_ids.append(step.workflow_id)  # it had ended meanwhile: nothing to hand
        self._error = SimulatedCrash(step.workflow_id, step.function_name)
        self._fired.set()
        logger.info(
            "Simulated crash of workflow %s at step %r (%s): handed to dead process %s",
            step.workflow_id, step.function_name, self.when, self._instance_id,
        )  # fmt: skip
        return self._error

    def _register_dead_process(self, store: Store) -> None:
        """Record the process that dies, as its heartbeat would have: a row, no lock.

        Its silence is what `dead_executor_timeout_sec` judges, so no takeover takes its
        workflows before `recover` does (unless the test outwaits that timeout, as in
        production).
        """
        record = ExecutorRecord(
            instance_id=self._instance_id,
            executor_id=self.executor_id,
            app_version=self._engine.app_version,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=0,  # the database's clock fills in both times
            heartbeat_at=0,
            lock_key=None,
        )
        liveness = store.open_liveness(record)
        try:
            liveness.beat()
        finally:
            liveness.close()

    def _owns(self, error: BaseException) -> bool:
        return error is self._error


class _CrashingStore:
    """The engine's store while a crash is planned: `record_step` strikes at the step; every
    other call goes straight through."""

    def __init__(self, inner: Store, crash: Crash) -> None:
        self._inner = inner
        self._crash = crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record_step(self, step: StepRow) -> str | None:
        crash = self._crash
        if not crash._claims(step):
            return self._inner.record_step(step)
        if crash.when == "after_checkpoint":
            reason = self._inner.record_step(step)
            if reason is not None:
                crash._let_pass()
                return reason
        raise crash._strike(self._inner, step)


def _executions_on_stack(engine: WorkflowEngine) -> list[tuple[str, int]]:
    """The workflow executions of ``engine`` on the calling thread's (or task's) stack,
    innermost first: the one recording a step, then those that called it directly."""
    found: list[tuple[str, int]] = []
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code in _EXECUTING and frame.f_locals.get("self") is engine:
            active = frame.f_locals.get("active")
            if isinstance(active, ActiveWorkflow):
                found.append((active.ctx.workflow_id, active.ctx.owner_token))
        frame = frame.f_back
    return found


@contextmanager
def crash_at(
    step: str | Callable[..., Any],
    *,
    when: CrashPoint = "after_checkpoint",
    workflow_id: str | None = None,
    timeout: float = 10.0,
) -> Iterator[Crash]:
    """Crash the first workflow that reaches ``step`` inside the block, as if its process died.

    The crash strikes where the step's record is written (``when``):

    - ``"after_checkpoint"``: the step ran and its outcome is recorded; the process dies
      before the workflow goes on. Recovery replays the step from its record: its body does
      not run again.
    - ``"before_checkpoint"``: the step ran (its effects happened) but its outcome is not
      recorded. Recovery runs the step again: steps are at-least-once, and this is the window
      where an effect that is not idempotent happens twice.

    The execution stops at once (a `SimulatedCrash` unwinds it, recording nothing more; a
    workflow that called it directly, like a function, stops with it), and its workflows stay
    PENDING, owned by a process that is now dead (`Crash.executor_id`). Nothing resumes them
    until `Crash.recover` takes them over through the same claim-and-replay path a live
    process runs for a dead one. A direct call of the workflow in the block ends the block
    (the crash is swallowed at its end); a workflow started in the background crashes on its
    own thread, and the end of the block waits for that.

    ``step`` is a step's name (a function name matches its qualified names too) or the step
    function itself; Perdure's own operations recorded like steps (``"DBOS.sleep"``,
    ``"DBOS.getEvent"``, a stream read) work as well; a message is recorded as its ``recv``
    by its sender, so ``"DBOS.recv"`` strikes only at a timeout. Transactions, whose
    checkpoint commits with their writes, cannot crash between the two.

    Example::

        with crash_at("charge_card") as crash:
            handle = DBOS.start_workflow(checkout, "order-1")
        crash.recover()
        assert handle.get_result() == "done"
        assert charges == 1  # recovered from the record: charged once

    Args:
        step: The step to crash at.
        when: Before or after its record is written.
        workflow_id: Only this workflow crashes (default: the first to reach the step).
        timeout: How long (real seconds) the end of the block waits for the crash.

    Raises:
        AssertionError: At the end of the block, no workflow reached the step in ``timeout``.
        DBOSInitializationError: Perdure is not launched.
    """
    if when not in get_args(CrashPoint):
        raise ValueError(f"crash_at(when=...) is one of {get_args(CrashPoint)}, not {when!r}")
    name = step if isinstance(step, str) else getattr(step, "__qualname__", repr(step))
    engine = DBOS._require_runtime().engine
    original = engine.store
    if isinstance(original, _CrashingStore):  # a state error, not a wrong argument type
        raise RuntimeError("crash_at blocks cannot be nested: plan one crash at a time")  # noqa: TRY004
    crash = Crash(engine, name, when=when, workflow_id=workflow_id)
    crashing = _CrashingStore(original, crash)
    engine.store = cast("Store", crashing)
    try:
        try:
            yield crash
        except SimulatedCrash as exc:
            if not crash._owns(exc):
                raise
        crash.wait(timeout)  # a workflow started in the block may reach the step after it
    finally:
        crash._disarm()
        if engine.store is crashing:
            engine.store = original
