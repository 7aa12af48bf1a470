"""Workflow argument validation (``@DBOS.workflow(validate_args=...)``), with a validator
built from the function's type hints by pydantic."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

ArgsValidator = Callable[[tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]


def pydantic_args_validator(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Pass as ``validate_args=`` to validate a workflow's arguments against its type hints
    (with pydantic); the decorator builds the real validator from the function.

    Raises:
        TypeError: Always, when called directly.
    """
    raise TypeError(
        "pydantic_args_validator is a marker for @DBOS.workflow(validate_args=...); to "
        "validate arguments yourself, call make_pydantic_args_validator(func)."
    )


def make_pydantic_args_validator(func: Callable[..., Any], *, skip_first: bool = False) -> (
    ArgsValidator
):  # fmt: skip
    """A validator converting a call's arguments to ``func``'s annotated types (pydantic's
    lax mode: ``"3"`` becomes ``3`` for an ``int``); it raises pydantic's ``ValidationError``
    naming the argument that does not fit. ``skip_first`` leaves out ``self`` / ``cls``.
    Parameters without annotations pass unchanged.
    """
    from pydantic import TypeAdapter  # noqa: PLC0415 - pydantic is needed only here

    hints = typing.get_type_hints(func)
    params = list(inspect.signature(func).parameters.values())
    if skip_first and params:
        params = params[1:]
    adapters = {p.name: TypeAdapter(hints[p.name]) for p in params if p.name in hints}

    def validate(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        var_args = next((p for p in params if p.kind == p.VAR_POSITIONAL), None)
        var_kwargs = next((p for p in params if p.kind == p.VAR_KEYWORD), None)
        new_args = []
        for i, value in enumerate(args):
            param = positional[i] if i < len(positional) else var_args
            adapter = adapters.get(param.name) if param is not None else None
            new_args.append(adapter.validate_python(value) if adapter else value)
        new_kwargs = {}
        for key, value in kwargs.items():
            named = next((p for p in params if p.name == key and p is not var_kwargs), None)
            adapter = adapters.get(named.name if named is not None else "")
            if adapter is None and var_kwargs is not None:
                adapter = adapters.get(var_kwargs.name)
            new_kwargs[key] = adapter.validate_python(value) if adapter else value
        return tuple(new_args), new_kwargs

    return validate
