"""The JSON serializer under generated input: every value it accepts comes back exactly, and
any bytes at all decode to a value or to a `DBOSSerializationError`, never another failure."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from perdure.error import DBOSSerializationError
from perdure.serialization import JsonSerializer, Payloads

SERIALIZER = JsonSerializer()


class Pair(NamedTuple):
    left: Any
    right: Any


PAYLOADS = Payloads(SERIALIZER)

# Keys of the tagged form show up in generated text too, to tempt the decoder.
TEXT = st.text(max_size=12) | st.sampled_from(["$t", "v", "c", "int", "dict", "exc", "tuple"])
HASHABLE_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.builds(
        lambda k, sign: sign * ((1 << 8192) + k), st.integers(-9, 9), st.sampled_from([1, -1])
    )
    | st.floats(allow_nan=False)
    | TEXT
    | st.binary(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
    | st.dates()
    | st.times()
    | st.datetimes(timezones=st.none() | st.just(timezone.utc))
    | st.timedeltas()
)
HASHABLE = st.recursive(
    HASHABLE_SCALARS,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
VALUES = st.recursive(
    HASHABLE | st.floats(allow_nan=False) | st.just(math.inf) | st.just(-math.inf),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(TEXT, inner, max_size=4)
        | st.dictionaries(HASHABLE, inner, max_size=3)
        | st.tuples(inner)
        | st.sets(HASHABLE, max_size=3)
        | st.builds(bytearray, st.binary(max_size=8))
        | st.builds(OrderedDict, st.lists(st.tuples(HASHABLE, inner), max_size=3))
        | st.builds(Counter, st.dictionaries(TEXT, st.integers(), max_size=3))
        | st.builds(lambda d: defaultdict(list, d), st.dictionaries(TEXT, inner, max_size=3))
        | st.builds(deque, st.lists(inner, max_size=3), st.none() | st.integers(3, 9))
        | st.builds(Pair, inner, inner)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:  # noqa: PLR0911 - one return per kind of value
    """Equal, and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, deque):
        return a.maxlen == b.maxlen and same(list(a), list(b))
    if isinstance(a, defaultdict) and a.default_factory is not b.default_factory:
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and all(same(a[k], b[k]) for k in a)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, datetime):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b)


@given(VALUES)
def test_every_value_comes_back_exactly(value: Any) -> None:
    data = PAYLOADS.encode(value, what="fuzzed value", workflow_id="fuzz")
    assert same(PAYLOADS.decode(data, "json", what="fuzzed value", workflow_id="fuzz"), value)


TAGS = [
    *("int", "float", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "datetime"),
    *("date", "time", "timedelta", "decimal", "uuid", "enum", "dataclass", "model", "exc", "?"),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(TEXT, inner, max_size=4)
        | st.fixed_dictionaries(
            {"$t": st.sampled_from(TAGS)},
            optional={
                "v": inner,
                "c": TEXT
                | st.sampled_from(
                    [
                        "builtins:SystemExit",
                        "builtins:ValueError",
                        "datetime:date",
                        "enum:Enum",
                        "os:system",
                    ]
                ),
                "a": inner,
                "d": inner,
                "m": inner,
            },
        )
    ),
    max_leaves=15,
)


def decodes_or_refuses(data: bytes) -> None:
    try:
        value = PAYLOADS.decode(data, "json", what="fuzzed bytes", workflow_id="fuzz")
    except DBOSSerializationError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert "'fuzz'" in refused  # names the workflow
        return
    assert not isinstance(value, BaseException) or isinstance(value, Exception)
    try:
        error = PAYLOADS.decode_error(data, "json", workflow_id="fuzz")
    except DBOSSerializationError:
        return
    assert isinstance(error, Exception)  # never SystemExit, KeyboardInterrupt...


@given(JSON)
def test_any_tagged_tree_decodes_or_is_refused(tree: Any) -> None:
    try:
        data = json.dumps(tree).encode()
    except ValueError:  # NaN keys and the like: not JSON
        return
    decodes_or_refuses(data)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


def test_a_deeply_nested_payload_is_refused_not_crashed() -> None:
    for depth in (10_000, 100_000):
        decodes_or_refuses(b"[" * depth + b"]" * depth)
        decodes_or_refuses(b'{"$t": "tuple", "v": ' * depth + b"[]" + b"}" * depth)


def test_uuid_and_date_types_round_trip() -> None:  # named, so a strategy gap cannot hide them
    for value in (uuid.uuid4(), date(2020, 1, 2), time(1, 2), timedelta(days=-3), Decimal("1e-7")):
        assert same(SERIALIZER.loads(SERIALIZER.dumps(value)), value)
