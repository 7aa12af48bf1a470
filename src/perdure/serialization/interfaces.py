"""What a serializer and a payload codec are, and DBOS's kind of serializer adapted to them."""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol, cast

from perdure.error import DBOSException


class Serializer(Protocol):
    """Turns a value into bytes and back. `name` is stored with every row it writes.

    `dumps` raises on values it cannot store; `loads` rebuilds a value from `dumps` output.
    """

    name: str

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class PayloadCodec(Protocol):
    """Optional transform over every stored payload (e.g. encryption).

    `encode` runs on serialized bytes before they are stored; `decode` reverses it on read.
    """

    def encode(self, data: bytes) -> bytes: ...
    def decode(self, data: bytes) -> bytes: ...


class TextSerializer:
    """A DBOS Transact ``Serializer`` (``serialize(value) -> str``, ``deserialize(str)``,
    ``name()``) used as Perdure's: its text is stored as UTF-8, under its name.

    Args:
        dbos_serializer: An instance of a subclass of DBOS's ``Serializer``.
    """

    def __init__(self, dbos_serializer: Any) -> None:
        self._inner = dbos_serializer
        self.name: str = str(dbos_serializer.name())

    def dumps(self, value: Any) -> bytes:
        """The UTF-8 bytes of the wrapped serializer's text for `value`."""
        return str(self._inner.serialize(value)).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """The value the wrapped serializer reads from the UTF-8 text `data`."""
        return self._inner.deserialize(data.decode("utf-8"))


def as_serializer(value: object) -> Serializer | None:
    """``value`` as a Perdure `Serializer`, or None if it is not one.

    A DBOS ``Serializer`` (``serialize``, ``deserialize``, ``name()``) is wrapped in
    `TextSerializer`; checked first, since ported code subclasses ``perdure.Serializer``,
    whose ``dumps``/``loads`` stubs it inherits without implementing. Any other object with a
    ``name`` string, ``dumps`` and ``loads`` is used as it is.
    """
    if all(callable(getattr(value, m, None)) for m in ("serialize", "deserialize", "name")):
        return TextSerializer(value)
    if (
        isinstance(getattr(value, "name", None), str)
        and callable(getattr(value, "dumps", None))
        and callable(getattr(value, "loads", None))
    ):
        return cast(Serializer, value)
    return None


class WorkflowSerializationFormat(str, Enum):
    """DBOS's per-call ``serialization_type``: Perdure stores every value with the configured
    serializer (``DEFAULT`` and ``NATIVE``); ``PORTABLE`` (DBOS's cross-language JSON) is
    refused where it is passed, with the reason."""

    PORTABLE = "portable"
    NATIVE = "native"
    DEFAULT = "default"


def check_serialization_type(value: object, where: str) -> None:
    """Refuse a ``serialization_type`` Perdure cannot honour; ``where`` names the call.

    Raises:
        DBOSException: ``PORTABLE`` or an unknown value.
    """
    if value is None or value in (
        WorkflowSerializationFormat.DEFAULT,
        WorkflowSerializationFormat.NATIVE,
    ):
        return
    raise DBOSException(
        f"{where}: serialization_type={value!r} is not supported. Perdure stores values with "
        "the configured serializer (DBOS's portable cross-language JSON format is not "
        "implemented); leave serialization_type out, or set config['serializer']."
    )
