"""Round trips and failure modes of perdure.serialization (no database)."""

from __future__ import annotations

import dataclasses
import enum
import math
import pickle
import sys
import threading
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from perdure.error import (
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)
from perdure.serialization import (
    JsonSerializer,
    Payloads,
    PickleSerializer,
    UnserializableError,
)

JSON = JsonSerializer()


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    items: tuple[Point, ...]
    tags: set[str]
    created: datetime
    total: Decimal = Decimal("0")
    audit: list[str] = dataclasses.field(init=False, default_factory=list)


class Address(pydantic.BaseModel):
    city: str
    zip_code: str = pydantic.Field(alias="zipCode")


class Customer(pydantic.BaseModel):
    name: str
    since: date
    address: Address
    color: Color


class TwoArgError(Exception):
    def __init__(self, account: str, amount: int) -> None:
        self.account = account
        self.amount = amount
        super().__init__(f"account {account} is short by {amount}")


class Opaque:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque)

    __hash__ = object.__hash__


class XorCodec:
    def encode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decode(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)


UTC_PLUS_2 = timezone(timedelta(hours=2, minutes=30))

ROUND_TRIP = [
    None,
    True,
    False,
    0,
    -17,
    2**200,
    10**5000,  # beyond Python's int/str conversion limit
    1.5,
    -0.0,
    math.inf,
    math.nan,
    -math.inf,
    "",
    "héllo ✓",
    "lone \ud800 surrogate",
    [1, "a", None, [2.5]],
    {"a": 1, "b": [True, {"c": None}]},
    {"$t": "tuple", "v": [1]},  # a user dict holding the reserved key
    {1: "one", (2, 3): "pair", None: 0, "s": frozenset({1})},
    (1, "a", (2,)),
    (),
    {1, "x", (1, 2)},
    frozenset({"a", 3}),
    set(),
    b"\x00\xffbytes",
    bytearray(b"abc"),
    datetime(2024, 5, 6, 7, 8, 9, 123456),
    datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC_PLUS_2),
    date(1999, 12, 31),
    time(23, 59, 1, 5),
    time(1, 2, tzinfo=timezone.utc),
    timedelta(days=-3, seconds=5, microseconds=7),
    Decimal("3.14159265358979323846264338327950288"),
    Decimal("-Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Color.RED,
    Color.BLUE,
    Level.LOW,
    Point(1, 2),
    {"points": [Point(3, 4)], "when": date(2020, 1, 1)},
]


def _same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: type(v).__name__)
def test_json_round_trip(value: Any) -> None:
    data = JSON.dumps(value)
    assert isinstance(data, bytes)
    back = JSON.loads(data)
    _same(back, value)
    if isinstance(value, datetime | time) and value.tzinfo is not None:
        assert back.utcoffset() == value.utcoffset()
    if isinstance(value, dict):
        for key, item in value.items():
            _same(back[key], item)


def test_plain_json_stays_plain_and_compact() -> None:
    assert JSON.dumps({"a": [1, "é", None, 2.5]}) == '{"a":[1,"é",null,2.5]}'.encode()
    assert JSON.dumps("x") == b'"x"'
    assert JSON.dumps(42) == b"42"
    assert JSON.dumps(None) == b"null"
    assert JSON.dumps((1, 2)) == b'{"$t":"tuple","v":[1,2]}'
    assert JSON.dumps({"$t": 1}) == b'{"$t":"dict","v":[["$t",1]]}'


def test_nested_dataclass_with_init_false_field() -> None:
    order = Order(
        id=uuid.uuid4(),
        items=(Point(1, 2), Point(3, 4)),
        tags={"a", "b"},
        created=datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc),
        total=Decimal("9.99"),
    )
    order.audit.append("created")
    back = JSON.loads(JSON.dumps(order))
    assert type(back) is Order
    assert back == order
    assert type(back.items) is tuple
    assert type(back.items[0]) is Point
    assert back.tags == {"a", "b"}
    assert back.audit == ["created"]


def test_pydantic_model() -> None:
    customer = Customer(
        name="Ada",
        since=date(2020, 2, 2),
        address=Address(city="Paris", zipCode="75001"),
        color=Color.BLUE,
    )
    back = JSON.loads(JSON.dumps(customer))
    assert type(back) is Customer
    assert back == customer
    assert type(back.address) is Address
    assert back.color is Color.BLUE


def _exc_round_trip(exc: BaseException) -> BaseException:
    back = JSON.loads(JSON.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    return back


def test_builtin_and_custom_exceptions() -> None:
    back = _exc_round_trip(ValueError("bad", 3))
    assert back.args == ("bad", 3)
    custom = _exc_round_trip(TwoArgError("acct-1", 50))
    assert isinstance(custom, TwoArgError)
    assert (custom.account, custom.amount) == ("acct-1", 50)


@pytest.mark.parametrize(
    ("exc", "attrs"),
    [
        (DBOSUnexpectedStepError("wf", 3, "a", "b"), {"step_id": 3, "recorded_name": "b"}),
        (DBOSNonExistentWorkflowError("target", "wf"), {"destination_id": "wf"}),
    ],
    ids=lambda v: type(v).__name__,
)
def test_perdure_errors_keep_attributes(exc: BaseException, attrs: dict[str, Any]) -> None:
    back = _exc_round_trip(exc)
    assert vars(back) == vars(exc)
    assert vars(back)["workflow_id"] == "wf"
    assert attrs.items() <= vars(back).items()


def test_exception_drops_unencodable_attribute() -> None:
    exc = KeyError("k")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    exc.note = "kept"  # type: ignore[attr-defined]
    back = _exc_round_trip(exc)
    assert not hasattr(back, "lock")
    assert back.note == "kept"  # type: ignore[attr-defined]


def _rename_module(data: bytes, module: str = "perdure_gone_module") -> bytes:
    return data.replace(__name__.encode(), module.encode())


def test_class_from_unloaded_module_is_a_clear_error() -> None:
    data = _rename_module(JSON.dumps(Point(1, 2)))
    payloads = Payloads(JsonSerializer())
    with pytest.raises(DBOSSerializationError) as info:
        payloads.decode(data, "json", what="output of step 's'", workflow_id="wf-1")
    message = str(info.value)
    assert "perdure_gone_module:Point" in message
    assert "import the module" in message.lower()
    assert "wf-1" in message


def test_exception_from_unloaded_module_becomes_unserializable_error() -> None:
    back = JSON.loads(_rename_module(JSON.dumps(TwoArgError("a", 1))))
    assert type(back) is UnserializableError
    assert str(back) == "perdure_gone_module:TwoArgError: account a is short by 1"
    assert back.original_type == "perdure_gone_module:TwoArgError"


def test_reading_never_imports_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "xml.dom.minidom", raising=False)
    ref = '"c":"xml.dom.minidom:Node"'
    with pytest.raises(DBOSSerializationError, match="not loaded"):
        JSON.loads(('{"$t":"dataclass",' + ref + ',"v":{}}').encode())
    back = JSON.loads(('{"$t":"exc",' + ref + ',"m":"x","a":["x"],"d":{}}').encode())
    assert type(back) is UnserializableError
    assert "xml.dom.minidom" not in sys.modules


def test_loaded_name_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(DBOSSerializationError, match="not a Enum class"):
        JSON.loads(b'{"$t":"enum","c":"os:system","v":"echo hi"}')
    back = JSON.loads(b'{"$t":"exc","c":"os:system","m":"m","a":["echo hi"],"d":{}}')
    assert type(back) is UnserializableError


@pytest.mark.parametrize("value", [object(), lambda: 1, [1, {"k": Opaque()}], threading.Lock()])
def test_unsupported_value_names_type_workflow_and_fix(value: Any) -> None:
    payloads = Payloads(JsonSerializer())
    with pytest.raises(DBOSSerializationError) as info:
        payloads.encode(value, what="input of workflow 'checkout'", workflow_id="wf-42")
    message = str(info.value)
    expected = "Opaque" if isinstance(value, list) else type(value).__qualname__
    assert expected in message
    assert "input of workflow 'checkout'" in message
    assert "wf-42" in message
    assert 'serializer="pickle"' in message
    assert isinstance(info.value.__cause__, TypeError)


def test_local_dataclass_is_refused_at_write_time() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(TypeError, match="cannot be found again"):
        JSON.dumps(Local(1))


def test_pickle_round_trips_arbitrary_objects() -> None:
    payloads = Payloads(PickleSerializer())
    assert payloads.format == "pickle"
    data = payloads.encode({"o": Opaque(), "p": Point(1, 2)}, what="output")
    back = payloads.decode(data, "pickle", what="output")
    assert back == {"o": Opaque(), "p": Point(1, 2)}


def test_a_json_configured_process_never_unpickles() -> None:
    """Unpickling runs the code a row names: only a process configured for pickle reads it."""
    data = pickle.dumps(_Exploit())  # a row rewritten by someone who can write rows
    with pytest.raises(DBOSSerializationError, match='serializer="pickle"') as info:
        Payloads(JsonSerializer()).decode(data, "pickle", what="output", workflow_id="wf-9")
    assert "wf-9" in str(info.value)
    with pytest.raises(DBOSSerializationError, match="pickle"):
        Payloads(JsonSerializer()).decode_error(data, "pickle", workflow_id="wf-9")
    assert _RAN == []


def test_codec_round_trip_and_format() -> None:
    payloads = Payloads(JsonSerializer(), XorCodec())
    assert payloads.format == "json+codec"
    data = payloads.encode({"secret": (1, 2)}, what="input")
    assert b"secret" not in data
    assert payloads.decode(data, "json+codec", what="input") == {"secret": (1, 2)}
    assert payloads.decode(JSON.dumps([1]), "json", what="input") == [1]


def test_codec_row_without_codec_is_an_error() -> None:
    data = Payloads(JsonSerializer(), XorCodec()).encode(1, what="input")
    with pytest.raises(DBOSSerializationError, match="codec") as info:
        Payloads(JsonSerializer()).decode(data, "json+codec", what="input", workflow_id="wf-7")
    assert "wf-7" in str(info.value)


@pytest.mark.parametrize(
    ("data", "fmt", "expected"),
    [(b"\x01", "msgpack", "format 'msgpack' is unknown"), (b"{not", "json", "format 'json'")],
)
def test_unknown_format_or_corrupt_bytes_is_an_error(data: bytes, fmt: str, expected: str) -> None:
    with pytest.raises(DBOSSerializationError, match=expected) as info:
        Payloads(JsonSerializer()).decode(data, fmt, what="output of step 'x'")
    assert "output of step 'x'" in str(info.value)


@pytest.mark.parametrize(
    "payloads",
    [
        Payloads(JsonSerializer()),
        Payloads(PickleSerializer()),
        Payloads(PickleSerializer(), XorCodec()),
    ],
    ids=["json", "pickle", "pickle+codec"],
)
def test_errors_round_trip(payloads: Payloads) -> None:
    stored = payloads.encode_error(DBOSUnexpectedStepError("wf", 1, "a", "b"), workflow_id="wf")
    back = payloads.decode_error(stored, payloads.format, workflow_id="wf")
    assert type(back) is DBOSUnexpectedStepError
    assert back.workflow_id == "wf"


@pytest.mark.parametrize("codec", [None, XorCodec()], ids=["plain", "codec"])
def test_unpicklable_error_falls_back_to_stand_in(codec: XorCodec | None) -> None:
    payloads = Payloads(PickleSerializer(), codec)
    unpicklable = ValueError("boom")
    unpicklable.lock = threading.Lock()  # type: ignore[attr-defined]
    back = payloads.decode_error(payloads.encode_error(unpicklable), payloads.format)
    assert type(back) is UnserializableError
    assert str(back) == "builtins:ValueError: boom"
    assert back.original_type == "builtins:ValueError"
    # Pickles fine but cannot be unpickled (custom __init__): caught at write time.
    back = payloads.decode_error(payloads.encode_error(TwoArgError("a", 1)), payloads.format)
    assert type(back) is UnserializableError
    assert str(back).endswith("TwoArgError: account a is short by 1")


def test_error_payload_that_is_not_an_exception_is_refused() -> None:
    with pytest.raises(DBOSSerializationError, match="not an exception"):
        Payloads(JsonSerializer()).decode_error(JSON.dumps([1]), "json")


class BrokenCodec(XorCodec):
    def encode(self, data: bytes) -> bytes:
        raise RuntimeError("key unavailable")


def test_encode_error_survives_a_failing_codec_without_leaking_the_message() -> None:
    payloads = Payloads(JsonSerializer(), BrokenCodec())
    with pytest.raises(DBOSSerializationError, match="codec failed"):
        payloads.encode(1, what="output")
    stored = payloads.encode_error(ValueError("card 4111"))
    assert b"4111" not in stored
    back = payloads.decode_error(stored, payloads.format)
    assert type(back) is UnserializableError
    assert str(back).startswith("builtins:ValueError: <message withheld")


_RAN: list[str] = []  # what unpickling an `_Exploit` would append to


def _run_code() -> None:
    _RAN.append("code ran from a pickle row")


class _Exploit:
    """Unpickled, it runs code: what a forged pickle row does."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_run_code, ())


def test_a_stored_error_restores_only_exceptions_and_their_public_attributes() -> None:
    class_ref = "builtins:SystemExit"
    stored = JSON.dumps(ValueError("boom")).replace(b"builtins:ValueError", class_ref.encode())
    restored = JSON.loads(stored)
    assert isinstance(restored, UnserializableError)  # never a SystemExit to raise on replay
    assert "SystemExit" in str(restored)

    # Perdure's own signals are never stored, and never come back from a row either.
    signal = JSON.loads(JSON.dumps(DBOSWorkflowCancelledError(workflow_id="wf")))
    assert isinstance(signal, UnserializableError)

    error = ValueError("boom")
    error.order = 7  # type: ignore[attr-defined]
    error._internal = "x"  # type: ignore[attr-defined]
    data = JSON.dumps(error)
    forged = data.replace(b'"order"', b'"_perdure_marker"')
    back = JSON.loads(data)
    assert back.order == 7
    assert not hasattr(back, "_internal")
    assert not hasattr(JSON.loads(forged), "_perdure_marker")
