"""Registered workflow functions, configured instances, and the lookups recovery needs."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perdure.error import DBOSException, DBOSWorkflowFunctionNotFoundError
from perdure.execution.auth import with_required_roles
from perdure.logs import get_logger
from perdure.validation import ArgsValidator, make_pydantic_args_validator, pydantic_args_validator

logger = get_logger(__name__)


class MethodKind:
    """How a registered function is bound when called."""

    FUNCTION = "function"
    INSTANCE = "instance"  # method of a DBOSConfiguredInstance subclass
    CLASS = "class"  # classmethod


@dataclass
class RegisteredWorkflow:
    """A function decorated with ``@DBOS.workflow``."""

    name: str
    func: Callable[..., Any]
    max_recovery_attempts: int | None  # None: recovered however often it crashes
    is_async: bool
    kind: str = MethodKind.FUNCTION
    class_name: str | None = None
    # Checks (and may convert) the arguments before each execution, replays included.
    validate_args: ArgsValidator | None = None
    _validator: ArgsValidator | None = None

    def validated(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments as ``validate_args`` returns them (unchanged without one)."""
        if self.validate_args is None:
            return args, kwargs
        if self._validator is None:
            # Built at the first call: by then @DBOS.dbos_class has said whether the function
            # is a method, whose self or cls the validator leaves out.
            self._validator = (
                make_pydantic_args_validator(self.func, skip_first=self.kind != MethodKind.FUNCTION)
                if self.validate_args is pydantic_args_validator
                else self.validate_args
            )
        return self._validator(args, kwargs)


class Registry:
    """Everything decorators registered, looked up by name when recovering workflows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.workflows: dict[str, RegisteredWorkflow] = {}
        self.classes: dict[str, type] = {}
        self._class_names: dict[type, str] = {}
        self.instances: dict[tuple[str, str], object] = {}

    def add_workflow(
        self,
        name: str,
        func: Callable[..., Any],
        *,
        max_recovery_attempts: int | None,
        validate_args: ArgsValidator | None = None,
    ) -> RegisteredWorkflow:
        """Register ``func`` under ``name``; a later registration of the same name replaces it."""
        entry = RegisteredWorkflow(
            name=name,
            func=func,
            max_recovery_attempts=max_recovery_attempts,
            is_async=inspect.iscoroutinefunction(func),
            validate_args=validate_args,
        )
        with self._lock:
            replaced = self.workflows.get(name)
            self.workflows[name] = entry
        if replaced is not None and replaced.func is not func:
            logger.warning(
                "Duplicate registration of function %r: the later function replaces the "
                "earlier one (give one of them another name= if both are needed).",
                name.removeprefix("<temp>."),  # a step's one-step workflow: name the step
            )
        return entry

    def add_class(self, cls: type, name: str | None = None) -> None:
        """Register a ``@DBOS.dbos_class`` and mark how its workflow methods bind."""
        class_name = name or cls.__qualname__
        with self._lock:
            if self.classes.setdefault(class_name, cls) is not cls:
                raise DBOSException(
                    f"Duplicate type registration for class {class_name!r}: recovery could "
                    "not tell the two classes apart. Give one of them another name with "
                    "@DBOS.dbos_class(class_name=...)."
                )
            self._class_names[cls] = class_name
            for attr in vars(cls).values():
                inner = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
                entry: RegisteredWorkflow | None = getattr(inner, "__perdure_workflow__", None)
                if entry is None:
                    continue
                entry.class_name = name or cls.__qualname__
                if isinstance(attr, classmethod):
                    entry.kind = MethodKind.CLASS
                elif not isinstance(attr, staticmethod):
                    entry.kind = MethodKind.INSTANCE

    def require_roles(self, cls: type, roles: tuple[str, ...]) -> None:
        """Make each workflow method of ``cls`` without roles of its own require ``roles``."""
        with self._lock:
            for attr in vars(cls).values():
                inner = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
                entry: RegisteredWorkflow | None = getattr(inner, "__perdure_workflow__", None)
                if entry is not None and not hasattr(entry.func, "__perdure_required_roles__"):
                    entry.func = with_required_roles(entry.func, roles, entry.name)

    def require_workflow_roles(self, entry: RegisteredWorkflow, roles: tuple[str, ...]) -> None:
        """Make the registered workflow ``entry`` require ``roles`` (replacing any it had)."""
        with self._lock:
            func = entry.func
            if hasattr(func, "__perdure_required_roles__"):
                func = getattr(func, "__wrapped__")  # noqa: B009 - the roles named last win
            entry.func = with_required_roles(func, roles, entry.name)

    def class_name_of(self, cls: type) -> str:
        """The name a class is recorded under: its ``dbos_class`` name, else its qualname."""
        return self._class_names.get(cls, cls.__qualname__)

    def add_instance(self, config_name: str, instance: object) -> None:
        """Register a configured instance so recovery finds it by its class and config name."""
        with self._lock:
            class_name = self.class_name_of(type(instance))
            if self.instances.setdefault((class_name, config_name), instance) is not instance:
                raise DBOSException(
                    f"Duplicate instance registration for class {class_name!r} instance "
                    f"{config_name!r}: recovery could not tell which one a workflow ran on. "
                    "Give each instance its own config name."
                )

    def workflow_names(self) -> tuple[str, ...]:
        """The names of every registered workflow: what this process can run."""
        with self._lock:
            return tuple(sorted(self.workflows))

    def find_workflow(self, workflow_id: str, name: str) -> RegisteredWorkflow:
        """The workflow registered as ``name``, or a clear error naming the workflow ID."""
        entry = self.workflows.get(name)
        if entry is None:
            raise DBOSWorkflowFunctionNotFoundError(
                workflow_id,
                f"Workflow {workflow_id!r} was recorded as running function {name!r}, but no "
                f"@DBOS.workflow named {name!r} is registered in this process. Import the module "
                "that defines it before DBOS.launch() (its recorded work is kept and will "
                "resume once it is registered).",
            )
        return entry

    def bound_target(
        self,
        workflow_id: str,
        entry: RegisteredWorkflow,
        *,
        class_name: str | None,
        config_name: str | None,
    ) -> object | None:
        """The object a method workflow binds to on recovery (instance or class), if any."""
        if entry.kind == MethodKind.FUNCTION:
            return None
        class_name = class_name or entry.class_name or ""
        if entry.kind == MethodKind.CLASS:
            cls = self.classes.get(class_name)
            if cls is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    workflow_id,
                    f"Workflow {workflow_id!r} needs class {class_name!r}, which is not "
                    "registered. Decorate it with @DBOS.dbos_class() and import it before launch.",
                )
            return cls
        instance = self.instances.get((class_name, config_name or ""))
        if instance is None:
            raise DBOSWorkflowFunctionNotFoundError(
                workflow_id,
                f"Workflow {workflow_id!r} runs on instance {config_name!r} of {class_name!r}, "
                "which does not exist in this process. Create that DBOSConfiguredInstance "
                "(same config_name) before DBOS.launch().",
            )
        return instance

    def clear(self) -> None:
        """Forget every registration (``DBOS.destroy(destroy_registry=True)``)."""
        with self._lock:
            self.workflows.clear()
            self.classes.clear()
            self.instances.clear()
