"""The default serializer: tagged JSON that stores typed values and never runs code on read."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sys
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from perdure.error import DBOSException, DBOSSerializationError

# The reserved key of a tagged JSON object: {"$t": "<tag>", ...}.
_TAG = "$t"
_TAG_BYTES = b'"$t"'
# Beyond ~4300 decimal digits, int <-> str conversion raises on Python 3.11+; hex has no limit.
_BIG_INT = 1 << 8192
# Starts an error payload that is a JSON description of an exception the configured serializer
# could not store. No JSON text and no pickle (protocol 2+ starts with 0x80) begins with "~".
FALLBACK_MARKER = b"~perdure-error-fallback:json~"


class UnserializableError(Exception):
    """Stand-in for a stored exception whose own type could not be stored or found again.

    Attributes:
        original_type: The original exception class as ``module:qualname``.
    """

    # Stored rows name it by this module (JSON refs and pickles): keep the public one.
    __module__ = "perdure.serialization"

    def __init__(self, message: str, original_type: str = "") -> None:
        self.original_type = original_type
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (str(self), self.original_type))


class UnsupportedTypeError(TypeError):
    """Raised while encoding; carries the innermost type that has no JSON form."""

    def __init__(self, type_: type, reason: str = "it has no JSON form") -> None:
        self.type_name = type_name(type_)
        self.reason = reason
        super().__init__(f"cannot store a value of type {self.type_name!r}: {reason}")


def type_name(type_: type) -> str:
    if type_.__module__ == "builtins":
        return type_.__qualname__
    return f"{type_.__module__}.{type_.__qualname__}"


def class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _find_class(ref: str) -> object:
    """Looks `module:qualname` up among loaded modules; returns None when it is not there.

    Reads namespaces with ``__dict__`` rather than getattr: a module ``__getattr__`` could run
    code, even import things, and reading stored data must never run code.
    """
    module_name, _, qualname = ref.partition(":")
    obj: object = sys.modules.get(module_name)
    if obj is None or not qualname:
        return None
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        if not isinstance(namespace, Mapping):
            return None
        obj = namespace.get(part)  # None stops the walk at the next getattr
    return obj


def _ref_for_encoding(value: object) -> str:
    cls = type(value)
    ref = class_ref(cls)
    # Failing now, at write time, beats storing a value that no process can read back.
    if _find_class(ref) is not cls:
        raise UnsupportedTypeError(
            cls, f"its class cannot be found again by the name {ref!r} (define it at module level)"
        )
    return ref


def _pydantic_base() -> type | None:
    # Pydantic is optional: if it was never imported, no value can be a pydantic model.
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None) if pydantic is not None else None
    return base if isinstance(base, type) else None


def _enc(value: Any) -> Any:  # noqa: PLR0911 - a flat type dispatch reads best
    """Returns the JSON-ready tree for `value`."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        return value if -_BIG_INT < value < _BIG_INT else {_TAG: "int", "v": format(value, "x")}
    if t is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if t is list:
        return [_enc(item) for item in value]
    if t is dict:
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: _enc(item) for key, item in value.items()}
        return {_TAG: "dict", "v": [[_enc(k), _enc(v)] for k, v in value.items()]}
    encoder = _ENCODERS.get(t)
    if encoder is not None:
        return encoder(value)
    if isinstance(value, tuple) and isinstance(getattr(t, "_fields", None), tuple):
        return {_TAG: "namedtuple", "c": _ref_for_encoding(value), "v": [_enc(i) for i in value]}
    if isinstance(value, Enum):
        return {_TAG: "enum", "c": _ref_for_encoding(value), "v": _enc(value.value)}
    if isinstance(value, BaseException):
        return _enc_exception(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_TAG: "dataclass", "c": _ref_for_encoding(value), "v": _enc_fields(value)}
    model_base = _pydantic_base()
    if model_base is not None and isinstance(value, model_base):
        return _enc_model(value)
    raise UnsupportedTypeError(t)


def _enc_model(model: Any) -> dict[str, Any]:
    # by_alias: model_validate expects aliases; round_trip: Json[...] fields validate again.
    dumped = model.model_dump(mode="python", by_alias=True, round_trip=True)
    return {_TAG: "model", "c": _ref_for_encoding(model), "v": _enc(dumped)}


def _enc_fields(value: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        # An init=False field without a default may never have been set; nothing to keep.
        if hasattr(value, field.name):
            encoded[field.name] = _enc(getattr(value, field.name))
    return encoded


def _enc_exception(exc: BaseException) -> dict[str, Any]:
    # An error is stored while something already went wrong; failing again here would lose it.
    # So args that cannot be encoded collapse to the message and such attributes are dropped:
    # the type and the message are what callers rely on.
    message = safe_str(exc)
    try:
        args = [_enc(arg) for arg in exc.args]
    except Exception:  # noqa: BLE001 - any failure in user values means "keep the message"
        args = [message]
    attrs: dict[str, Any] = {}
    for name, attr in vars(exc).items():
        if not isinstance(name, str) or name.startswith("_"):
            continue  # public attributes only (what a reader restores)
        try:
            attrs[name] = _enc(attr)
        except Exception:  # noqa: BLE001, S112 - drop the attribute, keep the error
            continue
    return {_TAG: "exc", "c": class_ref(type(exc)), "m": message, "a": args, "d": attrs}


def safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error itself
        return f"<unprintable {type(exc).__qualname__}>"


# The factories a stored defaultdict may name: builtin types only, never a stored callable.
_DEFAULT_FACTORIES: dict[str, type] = {
    t.__name__: t for t in (list, dict, set, int, float, str, bool, tuple, bytes)
}


def _enc_items(mapping: Mapping[Any, Any]) -> list[list[Any]]:
    return [[_enc(k), _enc(v)] for k, v in mapping.items()]


def _enc_defaultdict(value: defaultdict[Any, Any]) -> dict[str, Any]:
    factory = value.default_factory
    if (
        factory is not None
        and _DEFAULT_FACTORIES.get(getattr(factory, "__name__", "")) is not factory
    ):
        raise UnsupportedTypeError(
            defaultdict,
            f"its default_factory {factory!r} is not one of "
            f"{', '.join(_DEFAULT_FACTORIES)} or None (convert it to a dict)",
        )
    name = factory.__name__ if factory is not None else None
    return {_TAG: "defaultdict", "f": name, "v": _enc_items(value)}


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda v: {_TAG: "tuple", "v": [_enc(item) for item in v]},
    set: lambda v: {_TAG: "set", "v": [_enc(item) for item in v]},
    frozenset: lambda v: {_TAG: "frozenset", "v": [_enc(item) for item in v]},
    bytes: lambda v: {_TAG: "bytes", "v": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {_TAG: "bytearray", "v": base64.b64encode(v).decode("ascii")},
    # isoformat keeps the UTC offset; a ZoneInfo zone comes back as a fixed-offset timezone.
    datetime: lambda v: {_TAG: "datetime", "v": v.isoformat()},
    date: lambda v: {_TAG: "date", "v": v.isoformat()},
    time: lambda v: {_TAG: "time", "v": v.isoformat()},
    timedelta: lambda v: {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    Decimal: lambda v: {_TAG: "decimal", "v": str(v)},
    uuid.UUID: lambda v: {_TAG: "uuid", "v": str(v)},
    OrderedDict: lambda v: {_TAG: "odict", "v": _enc_items(v)},
    Counter: lambda v: {_TAG: "counter", "v": _enc_items(v)},
    defaultdict: _enc_defaultdict,
    deque: lambda v: {_TAG: "deque", "v": [_enc(i) for i in v], "m": v.maxlen},
}


def _dec(tree: Any) -> Any:
    """Rebuilds a value from its JSON tree."""
    t = type(tree)
    if t is list:
        return [_dec(item) for item in tree]
    if t is dict:
        if _TAG not in tree:
            return {key: _dec(item) for key, item in tree.items()}
        decoder = _DECODERS.get(tree[_TAG])
        if decoder is None:
            raise ValueError(f"unknown tag {tree[_TAG]!r} (written by a newer Perdure?)")
        return decoder(tree)
    return tree


def _loaded_class(tree: dict[str, Any], kind: str, check: Callable[[type], bool]) -> Any:
    ref = tree["c"]
    cls = _find_class(ref)
    if isinstance(cls, type) and check(cls):
        return cls
    problem = "is not loaded in this process" if cls is None else f"is not a {kind} class"
    raise DBOSSerializationError(
        f"The stored {kind} class {ref!r} {problem}. Import the module that defines it before "
        'reading this value (or use serializer="pickle"); Perdure never imports modules while '
        "reading stored data, because importing runs code."
    )


def _dec_dataclass(tree: dict[str, Any]) -> Any:
    cls = _loaded_class(tree, "dataclass", dataclasses.is_dataclass)
    values = {name: _dec(item) for name, item in tree["v"].items()}
    fields = dataclasses.fields(cls)
    obj = cls(**{f.name: values[f.name] for f in fields if f.init and f.name in values})
    for field in fields:
        if not field.init and field.name in values:
            # Frozen dataclasses reject plain assignment.
            object.__setattr__(obj, field.name, values[field.name])
    return obj


def _dec_model(tree: dict[str, Any]) -> Any:
    base = _pydantic_base()
    cls = _loaded_class(tree, "pydantic model", lambda c: base is not None and issubclass(c, base))
    return cls.model_validate(_dec(tree["v"]))


def _dec_namedtuple(tree: dict[str, Any]) -> Any:
    cls = _loaded_class(
        tree, "NamedTuple", lambda c: issubclass(c, tuple) and hasattr(c, "_fields")
    )
    return cls(*(_dec(item) for item in tree["v"]))


def _dec_items(tree: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(_dec(k), _dec(v)) for k, v in tree["v"]]


def _dec_defaultdict(tree: dict[str, Any]) -> defaultdict[Any, Any]:
    name = tree.get("f")
    factory = _DEFAULT_FACTORIES[name] if name is not None else None
    return defaultdict(factory, _dec_items(tree))


def _dec_enum(tree: dict[str, Any]) -> Any:
    cls = _loaded_class(tree, "Enum", lambda c: issubclass(c, Enum))
    return cls(_dec(tree["v"]))


def _dec_exception(tree: dict[str, Any]) -> BaseException:
    # Losing an error's type is better than losing the error, so every failure here degrades
    # to UnserializableError instead of raising.
    ref: str = tree["c"]
    message: str = tree.get("m", "")
    cls = _find_class(ref)
    # Only errors: a stored SystemExit or KeyboardInterrupt (or one of Perdure's own signals)
    # raised by a replay would end the caller's thread or process.
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return UnserializableError(f"{ref}: {message}", ref)
    try:
        args = tuple(_dec(arg) for arg in tree.get("a", []))
    except Exception:  # noqa: BLE001 - e.g. an arg whose class is not loaded
        args = (message,)
    try:
        exc = cls(*args)
    except Exception:  # noqa: BLE001 - custom __init__ signatures fail in arbitrary ways
        try:
            exc = cls.__new__(cls)
        except Exception:  # noqa: BLE001 - a custom __new__ that insists on its arguments
            return UnserializableError(f"{ref}: {message}", ref)
    # Even when __init__ accepted the args it may have read them differently (a message taken
    # for a workflow ID, say); the stored args and attributes are the truth.
    exc.args = args
    attrs: dict[str, Any] = {}
    for name, item in tree.get("d", {}).items():
        if not isinstance(name, str) or name.startswith("_"):
            continue  # public attributes only: a row must not set an object's internals
        try:
            attrs[name] = _dec(item)
        except Exception:  # noqa: BLE001, S112 - drop what cannot be read, keep the error
            continue
    if isinstance(exc, DBOSException):
        # Perdure's own errors map attribute names that earlier versions stored.
        exc.__setstate__(attrs)
    else:
        exc.__dict__.update(attrs)
    return exc


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "int": lambda t: int(t["v"], 16),
    "float": lambda t: float(t["v"]),
    "dict": lambda t: {_dec(k): _dec(v) for k, v in t["v"]},
    "tuple": lambda t: tuple(_dec(item) for item in t["v"]),
    "set": lambda t: {_dec(item) for item in t["v"]},
    "frozenset": lambda t: frozenset(_dec(item) for item in t["v"]),
    "bytes": lambda t: base64.b64decode(t["v"], validate=True),
    "bytearray": lambda t: bytearray(base64.b64decode(t["v"], validate=True)),
    "datetime": lambda t: datetime.fromisoformat(t["v"]),
    "date": lambda t: date.fromisoformat(t["v"]),
    "time": lambda t: time.fromisoformat(t["v"]),
    "timedelta": lambda t: timedelta(days=t["v"][0], seconds=t["v"][1], microseconds=t["v"][2]),
    "decimal": lambda t: Decimal(t["v"]),
    "uuid": lambda t: uuid.UUID(t["v"]),
    "enum": _dec_enum,
    "namedtuple": _dec_namedtuple,
    "odict": lambda t: OrderedDict(_dec_items(t)),
    "counter": lambda t: Counter(dict(_dec_items(t))),
    "defaultdict": _dec_defaultdict,
    "deque": lambda t: deque((_dec(item) for item in t["v"]), t["m"]),
    "dataclass": _dec_dataclass,
    "model": _dec_model,
    "exc": _dec_exception,
}

# Reused encoders: json.dumps with options builds a new encoder on every call.
_JSON_UTF8 = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)
_JSON_ASCII = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)


class JsonSerializer:
    """The safe default: tagged JSON that never runs stored code when read.

    Plain JSON values stay plain JSON. Other supported types become tagged objects
    ``{"$t": "<tag>", ...}``; classes are stored by ``module:qualname`` and, when read, are
    looked up only in modules this process has already imported.
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        """Encodes `value` as compact UTF-8 JSON; raises TypeError for unsupported types."""
        t = type(value)
        # Scalars are the common case (step outputs, IDs, counters): skip the tree walk.
        if value is None:
            return b"null"
        if t is bool:
            return b"true" if value else b"false"
        if t is int and -_BIG_INT < value < _BIG_INT:
            return int.__repr__(value).encode("ascii")
        if t is float and math.isfinite(value):
            return float.__repr__(value).encode("ascii")
        tree = value if t is str else _enc(value)
        try:
            return _JSON_UTF8.encode(tree).encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates have no UTF-8 form; \u escapes carry them through intact.
            return _JSON_ASCII.encode(tree).encode("ascii")

    def loads(self, data: bytes) -> Any:
        """Decodes bytes written by `dumps`."""
        tree = json.loads(data)
        # Without a tag anywhere the parsed JSON already is the value; skip the walk.
        if _TAG_BYTES not in data:
            return tree
        return _dec(tree)
