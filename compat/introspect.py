"""Dump a package's public DBOS-style API surface as JSON (run inside the package's venv).

``python compat/introspect.py dbos`` in a virtualenv holding dbos, or ``... perdure NAME...``
here (the names: dbos's exports, described too when Perdure has them outside its ``__all__``).
This file imports nothing from the ``compat`` package and only the standard library, so it runs
as a plain script under any interpreter that has the package to describe (Python 3.10+).

The dump: ``all`` (the sorted ``__all__``), ``objects`` (each exported name, described), and
``errors`` (every class and function of the package's ``error`` module). A class is described
by its significant bases, its constructor signature, and its members (methods, properties,
class properties, annotated attributes), or by its keys (TypedDict) or members (Enum).
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from typing import Any

# Where inherited members come from that no difference should be reported for.
_FOUNDATION_MODULES = {
    "builtins",
    "typing",
    "typing_extensions",
    "enum",
    "abc",
    "collections",
    "collections.abc",
    "contextlib",
}
# Bases worth comparing: builtins and enum classes say what ``except``/``isinstance`` sees.
_SIGNIFICANT_BASE_MODULES = {"builtins", "enum"}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_UNPACK = re.compile(r"(?:typing(?:_extensions)?\.)?Unpack\[([\w.]+)\]")
_NOT_REQUIRED = re.compile(r"(?:typing(?:_extensions)?\.)?NotRequired\[")
_REQUIRED = re.compile(r"(?:typing(?:_extensions)?\.)?Required\[")
# The default of a keyword that comes from ``**kwargs: Unpack[SomeTypedDict]``: not knowable.
UNPACKED = "<from an Unpack[TypedDict]>"


def _default(value: Any) -> str:
    """A default value's repr, without memory addresses (so dumps are deterministic)."""
    return _ADDRESS.sub("", repr(value))


def _unpacked_typeddict(func: Any, annotation: Any) -> Any:
    """The TypedDict of a ``**kwargs: Unpack[TD]`` annotation (a string, too), or None."""
    if isinstance(annotation, str):
        found = _UNPACK.fullmatch(annotation.strip())
        if not found:
            return None
        namespace = getattr(inspect.unwrap(func), "__globals__", {})
        target: Any = namespace
        for part in found.group(1).split("."):
            target = target.get(part) if isinstance(target, dict) else getattr(target, part, None)
        return target if _is_typeddict(target) else None
    if getattr(typing.get_origin(annotation), "__name__", None) == "Unpack" or (
        type(annotation).__name__ == "_UnpackAlias"
    ):
        args = typing.get_args(annotation)
        return args[0] if args and _is_typeddict(args[0]) else None
    return None


def _param(p: inspect.Parameter) -> dict[str, Any]:
    default = None if p.default is inspect.Parameter.empty else _default(p.default)
    return {"name": p.name, "kind": p.kind.name, "default": default}


def _signature(func: Any, *, drop_first: bool = False) -> dict[str, Any] | None:
    """Parameters (name, kind, default repr) of a callable, or None when it has none.

    ``**kwargs: Unpack[TD]`` is expanded into one keyword-only parameter per key of ``TD``.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())
    if drop_first and parameters:
        parameters = parameters[1:]
    described = []
    for p in parameters:
        typeddict = None
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            typeddict = _unpacked_typeddict(func, p.annotation)
        if typeddict is None:
            described.append(_param(p))
            continue
        for key, required in _typeddict_keys(typeddict).items():
            default = None if required else UNPACKED
            described.append({"name": key, "kind": "KEYWORD_ONLY", "default": default})
    target = inspect.unwrap(func) if callable(func) else func
    return {
        "async": inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target),
        "params": described,
    }


def _typeddict_keys(cls: Any) -> dict[str, bool]:
    """Each key and whether it is required, as a type checker reads it.

    Under ``from __future__ import annotations`` the runtime ``__required_keys__`` counts a
    ``NotRequired[...]`` key as required, so string annotations are read here.
    """
    required_keys = set(getattr(cls, "__required_keys__", set()))
    keys = {}
    for key, annotation in cls.__annotations__.items():
        required = key in required_keys
        text = (
            annotation.__forward_arg__ if isinstance(annotation, typing.ForwardRef) else annotation
        )
        if isinstance(text, str):
            if _NOT_REQUIRED.match(text):
                required = False
            elif _REQUIRED.match(text):
                required = True
        keys[key] = required
    return dict(sorted(keys.items()))


def _defining_class(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def _member(cls: type, name: str) -> dict[str, Any] | None:
    """One member of a class, by its raw descriptor (nothing is evaluated)."""
    owner = _defining_class(cls, name)
    if owner is None or owner.__module__ in _FOUNDATION_MODULES:
        return None
    return _describe_member(vars(owner)[name])


def _describe_member(raw: Any) -> dict[str, Any]:  # noqa: PLR0911 - one return per kind
    if isinstance(raw, staticmethod):
        return {"kind": "classmethod", "signature": _signature(raw.__func__)}
    if isinstance(raw, classmethod):
        return {"kind": "classmethod", "signature": _signature(raw.__func__, drop_first=True)}
    if isinstance(raw, property):
        return {"kind": "property", "signature": None}
    if inspect.isfunction(raw):
        return {"kind": "method", "signature": _signature(raw, drop_first=True)}
    if hasattr(raw, "__get__") and not callable(raw):
        # DBOS's classproperty and similar descriptors evaluated on the class.
        return {"kind": "classproperty", "signature": None}
    if callable(raw) and not isinstance(raw, type):
        return {"kind": "method", "signature": _signature(raw)}
    return {"kind": "attribute", "signature": None}


def _metaclass_members(cls: type) -> dict[str, dict[str, Any]]:
    """Properties and methods a metaclass gives the class (Perdure's ``DBOS.workflow_id``)."""
    members: dict[str, dict[str, Any]] = {}
    for meta in inspect.getmro(type(cls)):
        if meta.__module__ in _FOUNDATION_MODULES:
            continue
        for name, raw in vars(meta).items():
            if name.startswith("_") or name in members:
                continue
            if isinstance(raw, property):
                members[name] = {"kind": "classproperty", "signature": None}
            elif inspect.isfunction(raw):
                members[name] = {
                    "kind": "classmethod",
                    "signature": _signature(raw, drop_first=True),
                }
    return members


def _annotations(cls: type) -> list[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ in _FOUNDATION_MODULES:
            continue
        names.update(n for n in vars(klass).get("__annotations__", {}) if not n.startswith("_"))
    return sorted(names)


def _init_attributes(cls: type) -> list[str]:
    """Public attributes the constructors in the MRO assign (``self.name = ...``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if klass.__module__ in _FOUNDATION_MODULES or not inspect.isfunction(init):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and not target.attr.startswith("_")
                ):
                    names.add(target.attr)
    return sorted(names)


def _is_typeddict(obj: Any) -> bool:
    if typing.is_typeddict(obj):
        return True
    try:
        import typing_extensions  # noqa: PLC0415 - optional, both packages depend on it

        return bool(typing_extensions.is_typeddict(obj))
    except ImportError:
        return False


def _bases(cls: type, public: set[str]) -> list[str]:
    """Names in the MRO that decide ``isinstance``/``except``: builtins, enum, public classes."""
    names = []
    for klass in cls.__mro__[1:]:
        if klass is object:
            continue
        if klass.__module__ in _SIGNIFICANT_BASE_MODULES or klass.__name__ in public:
            names.append(klass.__name__)
    return names


def _describe_class(cls: type, public: set[str]) -> dict[str, Any]:
    if _is_typeddict(cls):
        return {"type": "typeddict", "keys": _typeddict_keys(cls)}
    if isinstance(cls, enum.EnumMeta):
        enum_members: list[enum.Enum] = list(cls)
        return {
            "type": "enum",
            "bases": _bases(cls, public),
            "members": {m.name: _default(m.value) for m in enum_members},
        }
    members: dict[str, dict[str, Any]] = {}
    names = {n for n in dir(cls) if not n.startswith("_")}
    for name in sorted(names):
        member = _member(cls, name)
        if member is not None:
            members[name] = member
    for name, member in _metaclass_members(cls).items():
        members.setdefault(name, member)
    for name in [*_annotations(cls), *_init_attributes(cls)]:
        members.setdefault(name, {"kind": "attribute", "signature": None})
    constructor = None
    if not getattr(cls, "_is_protocol", False):
        constructor = _signature(cls)
    return {
        "type": "class",
        "bases": _bases(cls, public),
        "constructor": constructor,
        "members": dict(sorted(members.items())),
    }


def _describe(obj: Any, public: set[str]) -> dict[str, Any]:
    if isinstance(obj, type):
        return _describe_class(obj, public)
    if isinstance(obj, types.ModuleType):
        return {"type": "module"}
    if inspect.isroutine(obj):
        return {"type": "function", "signature": _signature(obj)}
    # Type aliases (``Literal[...]``) and constants: only their presence is compared.
    return {"type": "value", "repr": _default(obj)}


def _error_module(package: types.ModuleType) -> dict[str, Any]:
    module = package.error
    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_") and isinstance(obj, type)
    }
    described: dict[str, Any] = {}
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if isinstance(obj, type) or inspect.isfunction(obj):
            described[name] = _describe(obj, public)
    return described


def dump(package_name: str, also: list[str]) -> dict[str, Any]:
    """The package's surface, as JSON-ready data; ``also``: more names, described if present."""
    package = importlib.import_module(package_name)
    exported = sorted(package.__all__)
    public = set(exported)
    version = "unknown"
    try:
        from importlib import metadata  # noqa: PLC0415 - only needed here

        version = metadata.version(package_name)
    except metadata.PackageNotFoundError:
        pass
    return {
        "package": package_name,
        "version": version,
        "all": exported,
        "objects": {
            name: _describe(getattr(package, name), public)
            for name in sorted(set(exported) | set(also))
            if hasattr(package, name)
        },
        "errors": _error_module(package),
    }


if __name__ == "__main__":
    json.dump(dump(sys.argv[1], sys.argv[2:]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
