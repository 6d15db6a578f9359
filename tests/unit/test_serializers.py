"""Serializers: tagged JSON (the default) and msgpack round-trip exactly, and fail clearly."""

from __future__ import annotations

import datetime as dt
import enum
import json
import pickle
import uuid
from decimal import Decimal
from typing import Any

import pytest
from markupsafe import Markup

from ormsession.errors import ConfigurationError, CorruptSessionDataError, SerializationError
from ormsession.serializers import (
    JSONSerializer,
    MsgpackSerializer,
    Tag,
    UnsafePickleSerializer,
    serializer_by_name,
)

SERIALIZERS = [JSONSerializer(), MsgpackSerializer()]
EVERYTHING: dict[str, Any] = {
    "none": None,
    "true": True,
    "int": 2**70,
    "float": 1.5,
    "str": "Zoë ✓",
    "list": [1, "a", [2]],
    "dict": {"nested": {"deep": [None]}},
    "datetime": dt.datetime(2026, 11, 25, 12, 30, 1, 123456, tzinfo=dt.UTC),
    "naive": dt.datetime(2026, 1, 1, 0, 0),
    "offset": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    "date": dt.date(2026, 2, 28),
    "time": dt.time(23, 59, 59, 1),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "bytes": bytes(range(256)),
    "uuid": uuid.uuid4(),
    "decimal": Decimal("-1.10"),
    "set": {3, 1, 2},
    "frozenset": frozenset({"a"}),
    "tuple": (1, (2, [3])),
    "markup": Markup("<b>hi</b>"),
    "tag lookalike": {" dt": "not a datetime"},
    "space key": {" x": 1, "y": 2},
    "nested tags": [{"when": dt.date(2020, 1, 1)}, ({1, 2},)],
}


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_every_supported_type_round_trips_with_its_type(serializer: Any) -> None:
    restored = serializer.loads(serializer.dumps(EVERYTHING))
    assert restored == EVERYTHING
    for key, value in EVERYTHING.items():
        assert type(restored[key]) is type(value), key
    assert restored["offset"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert restored["naive"].tzinfo is None


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_sets_serialize_identically_whatever_their_order(serializer: Any) -> None:
    # Unchanged sessions must serialize to the same bytes, or they would be rewritten.
    first = serializer.dumps({"s": {"b", "a", "c"}, "mixed": {1, "x", (2, 3)}})
    second = serializer.dumps({"s": {"c", "b", "a"}, "mixed": {(2, 3), "x", 1}})
    assert first == second


def test_enums_and_str_subclasses_store_as_their_value() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    restored = JSONSerializer().loads(JSONSerializer().dumps({"c": Color.RED, "l": Level.HIGH}))
    assert restored == {"c": "red", "l": 3} and type(restored["c"]) is str


class _Mixed(str, enum.Enum):  # noqa: UP042 - the spelling under test
    """The pre-3.11 spelling of a str enum: its ``str()`` is ``"_Mixed.RED"``, not its value."""

    RED = "red"


class _Shouting(str):
    def __str__(self) -> str:
        return "OTHER"


class _Odd(int):
    def __int__(self) -> int:
        return 99


class _Lying(float):
    def __float__(self) -> float:
        return 9.0


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_str_int_and_float_subclasses_store_their_own_value_not_their_str(
    serializer: Any,
) -> None:
    # As json.dumps (Flask's own sessions) writes them: the value the object holds, whatever
    # its __str__, __int__ or __float__ say (a (str, Enum) member's str() is "_Mixed.RED").
    data = {"e": _Mixed.RED, "s": _Shouting("mine"), "i": _Odd(5), "f": _Lying(1.5)}
    restored = serializer.loads(serializer.dumps(data))
    assert restored == {"e": "red", "s": "mine", "i": 5, "f": 1.5}
    assert [type(restored[k]) for k in "esif"] == [str, str, int, float]


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    "value", [object(), {1: "int key"}, float("nan"), float("inf"), {"x": lambda: 1}]
)
def test_unsupported_values_raise_a_serialization_error(serializer: Any, value: Any) -> None:
    with pytest.raises(SerializationError):
        serializer.dumps({"v": value})


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"string"',
        b'{"a": {" nope": 1}}',
        b'{"a": {" dt": 5}}',
        b'{"a": {" b": "!!!not base64"}}',
        b'{"a": {" di": [1]}}',
        b"\xff\xfe",
        b'{"a": {" tup": 1}}',
        pickle.dumps({"a": 1}),
        b'{"a":1}{"b":2}',  # two documents: only whole values are sessions
        b'{"a":1} ',  # padding dumps() never writes
        b"\xef\xbb\xbf{}",  # a BOM likewise
        b" {}",  # leading whitespace likewise
    ],
)
def test_corrupt_json_is_a_corrupt_data_error(raw: bytes) -> None:
    with pytest.raises(CorruptSessionDataError):
        JSONSerializer().loads(raw)


def test_corrupt_msgpack_is_a_corrupt_data_error() -> None:
    for raw in (b"", b"\xc1", b"\x93\x01\x02\x03", json.dumps({"a": 1}).encode()[:3]):
        with pytest.raises(CorruptSessionDataError):
            MsgpackSerializer().loads(raw)


def test_pickle_bytes_never_run_through_the_default_serializer() -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (exec, ("raise SystemExit('pickle ran')",))

    with pytest.raises(CorruptSessionDataError):
        JSONSerializer().loads(pickle.dumps({"x": Boom()}))
    with pytest.raises(ConfigurationError):
        serializer_by_name("pickle")


def test_the_explicit_pickle_opt_in_round_trips() -> None:
    serializer = UnsafePickleSerializer()
    assert serializer.loads(serializer.dumps({"a": {1, 2}})) == {"a": {1, 2}}


def test_extra_tags_extend_the_json_serializer() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    tag = Tag("pt", Point, lambda p: [p.x, p.y], lambda v: Point(*v))
    serializer = JSONSerializer(extra_tags=[tag])
    assert serializer.loads(serializer.dumps({"p": Point(1, 2)})) == {"p": Point(1, 2)}
    assert b'" pt"' in serializer.dumps({"p": Point(1, 2)})


def test_json_output_is_plain_readable_json() -> None:
    raw = JSONSerializer().dumps({"user": 1, "when": dt.date(2026, 1, 1)})
    assert json.loads(raw) == {"user": 1, "when": {" d": "2026-01-01"}}


def test_the_fast_unchanged_check_agrees_with_a_full_comparison() -> None:
    serializer = JSONSerializer()
    plain = {"cart": [1, 2], "user": {"name": "ann"}, "n": 1.5, "ok": True, "none": None}
    stored = serializer.dumps(plain)
    assert serializer.unchanged(dict(plain), stored)
    assert not serializer.unchanged({**plain, "n": 2}, stored)
    assert not serializer.unchanged(
        {"cart": [1, 2, 3], **{k: v for k, v in plain.items() if k != "cart"}}, stored
    )
    tagged = {"when": dt.date(2026, 1, 1), "s": {1}}
    # tagged types are never judged by the fast check: it answers False, never wrongly True
    assert not serializer.unchanged(tagged, serializer.dumps(tagged))
    assert not serializer.unchanged({"x": float("nan")}, b"")


def test_escaped_space_keys_still_decode_as_tags() -> None:
    raw = b'{"when": {"\\u0020d": "2026-01-02"}}'
    assert JSONSerializer().loads(raw) == {"when": dt.date(2026, 1, 2)}
