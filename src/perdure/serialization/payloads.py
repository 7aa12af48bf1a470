"""`Payloads`: every stored value written with the configured serializer and codec, and read
by the format recorded with it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from perdure.error import DBOSException, DBOSSerializationError
from perdure.serialization.interfaces import PayloadCodec, Serializer
from perdure.serialization.pickled import PickleSerializer, SignedPickleSerializer
from perdure.serialization.tagged_json import (
    FALLBACK_MARKER,
    JsonSerializer,
    UnserializableError,
    UnsupportedTypeError,
    class_ref,
    safe_str,
    type_name,
)

_logger = logging.getLogger(__name__)

_JSON = JsonSerializer()
_CODEC_SUFFIX = "+codec"


def _for_workflow(workflow_id: str | None) -> str:
    return f" (workflow ID {workflow_id!r})" if workflow_id is not None else ""


class Payloads:
    """Encodes values with the configured serializer and codec; decodes rows by their format.

    New payloads are written with the configured serializer and optional codec; any stored row
    is read by the format recorded with it: "json", "pickle" or the configured serializer's
    name, each optionally followed by "+codec".

    Errors: `encode_error` first tries the configured serializer and checks that the bytes read
    back as an exception. If not (unpicklable, or a custom ``__init__`` that breaks unpickling),
    it stores the ASCII marker ``~perdure-error-fallback:json~`` followed by the JSON form of an
    `UnserializableError` whose message is ``"<module:qualname>: <str(exc)>"`` (of the error
    itself for Perdure's own errors), passed through the codec like any payload, under the
    usual `format`. `decode_error` recognises the marker.

    Args:
        serializer: Writes every new payload; its name is the recorded format.
        codec: Optional transform (e.g. encryption) applied after serializing.
        pickle_keys: Keys of signed pickle: with them pickle is written signed, signed rows
            are read whatever the serializer, and unsigned pickle rows are never read.
    """

    def __init__(
        self,
        serializer: Serializer,
        codec: PayloadCodec | None = None,
        *,
        pickle_keys: Sequence[bytes] = (),
    ) -> None:
        if pickle_keys and isinstance(serializer, PickleSerializer):
            serializer = SignedPickleSerializer(pickle_keys)  # with a key, pickle is signed
        self._serializer = serializer
        self._codec = codec
        self._pickle_keys = tuple(pickle_keys)
        self.format: str = serializer.name + (_CODEC_SUFFIX if codec is not None else "")
        # Pickle only when chosen: unpickling a row runs whatever code the row names, so a
        # process configured for JSON never reads one (whoever can write a row could run code).
        self._readers: dict[str, Serializer] = {"json": _JSON, serializer.name: serializer}
        if pickle_keys:  # signed rows are safe to read; unsigned ones no longer are
            self._readers.pop(PickleSerializer.name, None)
            self._readers[SignedPickleSerializer.name] = (
                serializer
                if isinstance(serializer, SignedPickleSerializer)
                else SignedPickleSerializer(pickle_keys)
            )

    def in_format(self, fmt: str, *, workflow_id: str | None = None) -> Payloads:
        """Payloads that write in ``fmt``: a workflow's output keeps the format of its row.

        Raises:
            DBOSSerializationError: This process has no serializer or codec for ``fmt``.
        """
        if fmt == self.format:
            return self
        name = fmt.removesuffix(_CODEC_SUFFIX)
        needs_codec = fmt.endswith(_CODEC_SUFFIX)
        serializer = self._readers.get(name)
        if serializer is None or (needs_codec and self._codec is None):
            raise DBOSSerializationError(
                f"A workflow{_for_workflow(workflow_id)} was recorded in format {fmt!r}, which "
                "this process cannot write. Configure the same serializer (and payload_codec) "
                "as the process that started it."
            )
        return Payloads(
            serializer, self._codec if needs_codec else None, pickle_keys=self._pickle_keys
        )

    def writing_with(self, serializer: Serializer) -> Payloads:
        """Payloads that write with ``serializer`` (through the same codec and pickle keys)
        and read every format this one reads as well: a datasource's own serializer, whose
        rows sit among rows written with the configured one."""
        payloads = Payloads(serializer, self._codec, pickle_keys=self._pickle_keys)
        payloads._readers = {**self._readers, **payloads._readers}
        return payloads

    def encode(self, value: Any, *, what: str, workflow_id: str | None = None) -> bytes:
        """Serializes `value` for storage in `self.format`.

        Args:
            value: The value to store.
            what: Describes the value for error messages, e.g. "output of step 'charge'".
            workflow_id: The owning workflow, named in error messages.

        Raises:
            DBOSSerializationError: The value cannot be serialized; the message names its type.
        """
        where = f"{what}{_for_workflow(workflow_id)}"
        try:
            data = self._serializer.dumps(value)
        except Exception as exc:
            if isinstance(exc, UnsupportedTypeError):
                stored_type, reason = exc.type_name, exc.reason
            else:
                stored_type, reason = type_name(type(value)), f"{type(exc).__name__}: {exc}"
            raise DBOSSerializationError(
                f"Cannot store the {where}: the {self._serializer.name!r} serializer cannot "
                f"serialize a value of type {stored_type!r} ({reason}). To fix this, pass "
                'serializer="pickle" in the DBOS config, or a custom Serializer, or convert the '
                "value to a supported type."
            ) from exc
        try:
            return self._codec.encode(data) if self._codec is not None else data
        except Exception as exc:
            raise DBOSSerializationError(
                f"Cannot store the {where}: the payload codec failed "
                f"({type(exc).__name__}: {exc}). Check the codec in the DBOS config."
            ) from exc

    def decode(self, data: bytes, fmt: str, *, what: str, workflow_id: str | None = None) -> Any:
        """Reads a stored payload with the serializer (and codec) named by its format.

        Args:
            data: The stored bytes.
            fmt: The format recorded with the row, e.g. "json" or "pickle+codec".
            what: Describes the value for error messages.
            workflow_id: The owning workflow, named in error messages.

        Raises:
            DBOSSerializationError: Unknown format, missing codec, or unreadable bytes.
        """
        where = f"{what}{_for_workflow(workflow_id)}"
        reader, raw = self._unwrap(data, fmt, where)
        return _load(reader, raw, fmt, where)

    def encode_error(self, exc: BaseException, *, workflow_id: str | None = None) -> bytes:
        """Serializes an exception for storage; never raises (see the class docstring)."""
        try:
            data = self._serializer.dumps(exc)
            # Some exceptions pickle fine but fail to unpickle; find out now, not on read.
            if isinstance(self._serializer.loads(data), BaseException):
                return self._codec.encode(data) if self._codec is not None else data
        except Exception:  # noqa: BLE001, S110 - any failure means "use the fallback below"
            pass
        ref = class_ref(type(exc))
        fallback = _own_error_as_json(exc)
        if fallback is None:
            _logger.warning(
                "Storing error %s of workflow %s as UnserializableError", ref, workflow_id
            )
            fallback = FALLBACK_MARKER + _JSON.dumps(
                UnserializableError(f"{ref}: {safe_str(exc)}", ref)
            )
        try:
            return self._codec.encode(fallback) if self._codec is not None else fallback
        except Exception:  # noqa: BLE001 - never raise, and never store the message unencoded
            withheld = f"{ref}: <message withheld: the payload codec failed>"
            return FALLBACK_MARKER + _JSON.dumps(UnserializableError(withheld, ref))

    def decode_error(
        self, data: bytes, fmt: str, *, workflow_id: str | None = None
    ) -> BaseException:
        """Reads an exception stored by `encode_error`.

        Raises:
            DBOSSerializationError: The row cannot be read, or does not hold an exception.
        """
        where = f"recorded error{_for_workflow(workflow_id)}"
        reader: Serializer = _JSON
        raw = data  # a marker before any codec means the codec failed at write time
        if not data.startswith(FALLBACK_MARKER):
            reader, raw = self._unwrap(data, fmt, where)
        if raw.startswith(FALLBACK_MARKER):
            reader, raw = _JSON, raw[len(FALLBACK_MARKER) :]
        value = _load(reader, raw, fmt, where)
        if not isinstance(value, BaseException):
            raise DBOSSerializationError(
                f"The {where} holds a {type_name(type(value))!r}, not an exception; the row "
                "was not written by Perdure's encode_error."
            )
        return value

    def _unwrap(self, data: bytes, fmt: str, where: str) -> tuple[Serializer, bytes]:
        name = fmt.removesuffix(_CODEC_SUFFIX)
        reader = self._readers.get(name)
        if reader is None and name == PickleSerializer.name:
            raise DBOSSerializationError(
                f"Cannot read the {where}: it was stored as an unsigned pickle, which this "
                "process does not read, because unpickling runs the code a row names"
                + (
                    " and pickle_signing_key is configured: only signed rows are trusted."
                    if self._pickle_keys
                    else '. Read it from a process configured with serializer="pickle".'
                )
            )
        if reader is None and name == SignedPickleSerializer.name:
            raise DBOSSerializationError(
                f"Cannot read the {where}: it was stored as a signed pickle. Configure "
                "pickle_signing_key (the key that signed it) to read it."
            )
        if reader is None:
            raise DBOSSerializationError(
                f"Cannot read the {where}: its format {fmt!r} is unknown. Pass a Serializer "
                f"named {name!r} as serializer in the DBOS config to read it."
            )
        if name == fmt:
            return reader, data
        if self._codec is None:
            raise DBOSSerializationError(
                f"Cannot read the {where}: it was stored in format {fmt!r}, through a payload "
                "codec, but none is configured. Configure the codec that wrote it."
            )
        try:
            return reader, self._codec.decode(data)
        except Exception as exc:
            raise DBOSSerializationError(
                f"Cannot read the {where} (format {fmt!r}): the payload codec failed "
                f"({type(exc).__name__}: {exc}). Configure the codec (and keys) that wrote it."
            ) from exc


def _own_error_as_json(exc: BaseException) -> bytes | None:
    """A Perdure error in JSON, keeping its type even when an error it carries (an attempt's
    error in `DBOSMaxStepRetriesExceeded.errors`) does not pickle; None for other errors."""
    if not isinstance(exc, DBOSException):
        return None
    try:
        return FALLBACK_MARKER + _JSON.dumps(exc)
    except Exception:  # noqa: BLE001 - then the stand-in, like any other error
        return None


def _load(reader: Serializer, raw: bytes, fmt: str, where: str) -> Any:
    try:
        return reader.loads(raw)
    except DBOSSerializationError as exc:  # already says what to do
        raise DBOSSerializationError(f"Cannot read the {where}: {exc.message}") from exc
    except Exception as exc:
        raise DBOSSerializationError(
            f"Cannot read the {where} stored in format {fmt!r}: {type(exc).__name__}: {exc}. "
            "If a class is missing, import the module that defines it before reading; "
            "otherwise configure the serializer and codec that wrote the row."
        ) from exc
