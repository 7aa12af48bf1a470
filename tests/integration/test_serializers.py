"""Serializers and payload codecs through the public API, on both backends.

Classes used as payloads live at module level: the JSON format finds classes again by importable
name, and pickle by module and qualified name.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from perdure import DBOS, Serializer, SetWorkflowID
from perdure.error import DBOSSerializationError
from perdure.serialization import JsonSerializer
from tests.fixtures.app import make_config
from tests.integration.system_tables import mark_pending, relaunch, step_rows, workflow_row


class Opaque:
    """Neither a dataclass nor a JSON type: only pickle can store it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass(frozen=True)
class Order:
    color: Color
    total: Decimal
    placed: datetime
    lines: tuple[str, ...]


class Point(NamedTuple):
    x: int
    y: Decimal


class DbosStyleSerializer(Serializer):
    """A subclass of DBOS's Serializer as ported code has it (``from perdure import
    Serializer``): text out, text in, and name() a method."""

    def serialize(self, data: Any) -> str:
        return "B64:" + base64.b64encode(json.dumps(data).encode()).decode()

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(base64.b64decode(serialized_data.removeprefix("B64:")))

    def name(self) -> str:
        return "dbos-style"


class PaymentError(Exception):
    """Carries typed values in its args, which must survive storage."""


class XorCodec:
    """A toy payload codec (stands in for encryption)."""

    def __init__(self, key: int = 0x5A) -> None:
        self.key = key
        self.encoded = 0

    def encode(self, data: bytes) -> bytes:
        self.encoded += 1
        return bytes(b ^ self.key for b in data)

    def decode(self, data: bytes) -> bytes:
        return bytes(b ^ self.key for b in data)


class ReversedJson:
    """A custom Serializer: JSON bytes, stored backwards."""

    name = "reversed-json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()[::-1]

    def loads(self, data: bytes) -> Any:
        return json.loads(data[::-1])


ORDER = Order(
    color=Color.GREEN,
    total=Decimal("12.30"),
    placed=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2))),
    lines=("apple", "pear"),
)


@pytest.fixture
def launch(db_url: str) -> Iterator[Callable[..., None]]:
    """Configure and launch Perdure on the test's database with config overrides."""

    def configure(**overrides: object) -> None:
        DBOS.destroy()
        DBOS(config=make_config(db_url, **overrides))
        DBOS.launch()

    yield configure
    DBOS.destroy(destroy_registry=True)


def test_pickle_round_trips_arbitrary_objects(launch: Callable[..., None], db_url: str) -> None:
    launch(serializer="pickle")

    @DBOS.step()
    def double(item: Opaque) -> Opaque:
        return Opaque(item.value * 2)

    @DBOS.workflow()
    def flow(item: Opaque, *, extra: set[Opaque]) -> list[Opaque]:
        return [double(item), *sorted(extra, key=lambda o: o.value)]

    with SetWorkflowID("pickled"):
        assert flow(Opaque(3), extra={Opaque(1)}) == [Opaque(6), Opaque(1)]
    handle = DBOS.retrieve_workflow("pickled")
    assert handle.get_result() == [Opaque(6), Opaque(1)]
    status = handle.get_status()
    assert status.input == {"args": (Opaque(3),), "kwargs": {"extra": {Opaque(1)}}}
    assert status.output == [Opaque(6), Opaque(1)]
    assert workflow_row(db_url, "pickled").serialization == "pickle"
    assert [r.serialization for r in step_rows(db_url, "pickled")] == ["pickle"]


def test_json_round_trips_typed_outputs_and_errors(dbos: type[DBOS], db_url: str) -> None:
    @DBOS.step()
    def make_order() -> Order:
        return ORDER

    @DBOS.workflow()
    def place(color: Color) -> Order:
        order = make_order()
        assert type(order) is Order
        return dataclasses.replace(order, color=color)

    @DBOS.workflow()
    def refuse(order: Order) -> None:
        raise PaymentError(order.total, order.color, order.placed)

    with SetWorkflowID("typed-ok"):
        place(Color.RED)
    with SetWorkflowID("typed-error"), pytest.raises(PaymentError):
        refuse(ORDER)

    expected = dataclasses.replace(ORDER, color=Color.RED)
    # Read back from the database: the values keep their exact types.
    assert DBOS.retrieve_workflow("typed-ok").get_result() == expected
    status = DBOS.retrieve_workflow("typed-ok").get_status()
    assert status.input == {"args": (Color.RED,), "kwargs": {}}
    assert status.output == expected
    assert type(status.output.total) is Decimal
    assert status.output.placed.utcoffset() == timedelta(hours=2)
    assert workflow_row(db_url, "typed-ok").serialization == "json"

    with pytest.raises(PaymentError) as caught:
        DBOS.retrieve_workflow("typed-error").get_result()
    assert caught.value.args == (Decimal("12.30"), Color.GREEN, ORDER.placed)
    error_status = DBOS.retrieve_workflow("typed-error").get_status()
    assert error_status.input == {"args": (ORDER,), "kwargs": {}}
    assert isinstance(error_status.error, PaymentError)

    # On replay the step's recorded Order is decoded back into an Order (the body asserts it).
    mark_pending(db_url, "typed-ok")
    relaunch(db_url)
    assert DBOS.retrieve_workflow("typed-ok").get_result() == expected


def test_payload_codec_encodes_every_payload(launch: Callable[..., None], db_url: str) -> None:
    codec = XorCodec()
    launch(payload_codec=codec)

    @DBOS.step()
    def shout(word: str) -> str:
        return word.upper()

    @DBOS.workflow()
    def flow(word: str, order: Order) -> tuple[str, Order]:
        return shout(word), order

    @DBOS.workflow()
    def fails(word: str) -> None:
        raise PaymentError(f"secret {word}")

    with SetWorkflowID("coded"):
        assert flow("secret", ORDER) == ("SECRET", ORDER)
    with SetWorkflowID("coded-error"), pytest.raises(PaymentError):
        fails("reason")
    assert codec.encoded >= 4  # inputs, step output, output, and the error at least

    row = workflow_row(db_url, "coded")
    plain_inputs = JsonSerializer().dumps({"args": ("secret", ORDER), "kwargs": {}})
    assert row.serialization == "json+codec"
    assert bytes(row.inputs) != plain_inputs
    assert bytes(row.inputs) == codec.encode(plain_inputs)
    assert b"secret" not in bytes(row.inputs)
    step = step_rows(db_url, "coded")[0]
    assert (step.serialization, bytes(step.output)) == ("json+codec", codec.encode(b'"SECRET"'))
    assert b"secret" not in bytes(workflow_row(db_url, "coded-error").error)

    status = DBOS.retrieve_workflow("coded").get_status()
    assert (status.input, status.output) == (
        {"args": ("secret", ORDER), "kwargs": {}},
        ("SECRET", ORDER),
    )
    with pytest.raises(PaymentError, match="secret reason"):
        DBOS.retrieve_workflow("coded-error").get_result()

    # Without the codec the rows cannot be read, and the error says so.
    launch()
    with pytest.raises(
        DBOSSerializationError, match="through a payload codec, but none is configured"
    ):
        DBOS.retrieve_workflow("coded").get_result()


def test_serialization_format_is_stored_per_row(launch: Callable[..., None], db_url: str) -> None:
    launch()

    @DBOS.workflow()
    def echo(value: Any) -> Any:
        return value

    with SetWorkflowID("as-json"):
        assert echo(ORDER) == ORDER
    launch(serializer="pickle")
    with SetWorkflowID("as-pickle"):
        assert echo(Opaque(9)) == Opaque(9)

    assert workflow_row(db_url, "as-json").serialization == "json"
    assert workflow_row(db_url, "as-pickle").serialization == "pickle"
    # Each row is read with the format it was written in, whatever the configured default...
    old = DBOS.retrieve_workflow("as-json")
    assert old.get_result() == ORDER
    assert old.get_status().input == {"args": (ORDER,), "kwargs": {}}
    assert DBOS.retrieve_workflow("as-pickle").get_result() == Opaque(9)
    launch()  # back to JSON: JSON rows still read...
    assert DBOS.retrieve_workflow("as-json").get_result() == ORDER
    # ...but pickle rows are never unpickled by a process not configured for pickle.
    with pytest.raises(DBOSSerializationError, match='serializer="pickle"') as refused:
        DBOS.retrieve_workflow("as-pickle").get_result()
    assert "as-pickle" in str(refused.value)


def test_custom_serializer_object(launch: Callable[..., None], db_url: str) -> None:
    launch(serializer=ReversedJson())

    @DBOS.step()
    def count(words: list[str]) -> dict[str, int]:
        return {w: len(w) for w in words}

    @DBOS.workflow()
    def flow(words: list[str]) -> dict[str, int]:
        return count(words)

    with SetWorkflowID("custom"):
        assert flow(["ab", "cde"]) == {"ab": 2, "cde": 3}
    row = workflow_row(db_url, "custom")
    assert row.serialization == "reversed-json"
    assert json.loads(bytes(row.output)[::-1]) == {"ab": 2, "cde": 3}
    assert DBOS.retrieve_workflow("custom").get_result() == {"ab": 2, "cde": 3}


def test_signed_pickle_round_trips_and_rotates_keys(
    launch: Callable[..., None], db_url: str
) -> None:
    old_key, new_key = "the first key, 32 bytes long...!", b"the second key, as bytes, 32B..!"
    launch(serializer="pickle", pickle_signing_key=old_key)

    @DBOS.step()
    def double(item: Opaque) -> Opaque:
        return Opaque(item.value * 2)

    @DBOS.workflow()
    def flow(item: Opaque) -> Opaque:
        return double(item)

    with SetWorkflowID("signed-old"):
        assert flow(Opaque(2)) == Opaque(4)
    row = workflow_row(db_url, "signed-old")
    assert row.serialization == "signed-pickle"
    assert [r.serialization for r in step_rows(db_url, "signed-old")] == ["signed-pickle"]

    # Rotation: the new key signs, the old one still verifies.
    launch(serializer="pickle", pickle_signing_key=[new_key, old_key])
    with SetWorkflowID("signed-new"):
        assert flow(Opaque(5)) == Opaque(10)
    assert DBOS.retrieve_workflow("signed-old").get_result() == Opaque(4)
    # A JSON process holding the keys reads signed rows: they cannot run a stranger's code.
    launch(pickle_signing_key=[new_key])
    assert DBOS.retrieve_workflow("signed-new").get_result() == Opaque(10)
    with pytest.raises(DBOSSerializationError, match="signature does not verify") as refused:
        DBOS.retrieve_workflow("signed-old").get_result()  # signed with a key dropped since
    assert "signed-old" in str(refused.value)
    launch()  # no key: signed rows are not read
    with pytest.raises(DBOSSerializationError, match="Configure pickle_signing_key"):
        DBOS.retrieve_workflow("signed-new").get_result()


def test_json_stores_what_dbos_users_commonly_return(dbos: type[DBOS], db_url: str) -> None:
    value = {
        "point": Point(1, Decimal("2.5")),
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "counts": Counter("abracadabra"),
        "groups": defaultdict(list, {"x": [1, 2]}),
        "recent": deque([3, 4], maxlen=10),
    }

    @DBOS.step()
    def make() -> dict[str, Any]:
        return value

    @DBOS.workflow()
    def flow() -> dict[str, Any]:
        made = make()
        assert type(made["point"]) is Point  # also on replay, from the recorded step
        return made

    with SetWorkflowID("common-types"):
        assert flow() == value
    mark_pending(db_url, "common-types")
    relaunch(db_url)
    result = DBOS.retrieve_workflow("common-types").get_result()
    assert result == value
    assert [type(v) for v in result.values()] == [Point, OrderedDict, Counter, defaultdict, deque]
    assert result["groups"].default_factory is list
    assert result["recent"].maxlen == 10

    @DBOS.workflow()
    def odd() -> Any:
        return defaultdict(lambda: 0)

    with (
        SetWorkflowID("odd-factory"),
        pytest.raises(DBOSSerializationError, match="default_factory") as refused,
    ):
        odd()
    assert "odd-factory" in str(refused.value)


def test_a_dbos_serializer_subclass_is_accepted(launch: Callable[..., None], db_url: str) -> None:
    launch(serializer=DbosStyleSerializer())

    @DBOS.step()
    def greet(name: str) -> dict[str, str]:
        return {"greeting": f"hi {name}"}

    @DBOS.workflow()
    def flow(name: str) -> dict[str, str]:
        return greet(name)

    with SetWorkflowID("dbos-serializer"):
        assert flow("ada") == {"greeting": "hi ada"}
    row = workflow_row(db_url, "dbos-serializer")
    assert row.serialization == "dbos-style"
    assert bytes(row.output).startswith(b"B64:")
    assert DBOS.retrieve_workflow("dbos-serializer").get_result() == {"greeting": "hi ada"}
