"""The serializers on hostile and on arbitrary input.

Loaders: whatever bytes the store holds, ``loads`` returns a dict that ``dumps`` can write
again, or raises :class:`CorruptSessionDataError`, never anything else. Dumpers: whatever
the app puts in a session, ``dumps`` returns bytes or raises :class:`SerializationError`.
Round trips: every supported value comes back equal and of the same type.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ormsession.errors import CorruptSessionDataError, SerializationError
from ormsession.serializers import JSONSerializer, MsgpackSerializer

SERIALIZERS = [JSONSerializer(), MsgpackSerializer()]
IDS = ["json", "msgpack"]

#: The keys that mean something to the tagged format (tags, the escape) and near misses.
TAG_KEYS = [" b", " u", " td", " dt", " d", " t", " tup", " set", " fset", " dec", " int"]
TAG_KEYS += [" m", " di", " zz", "", " ", "a"]

# -- arbitrary stored forms: what anyone with write access to the store could leave --------
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_keys = st.sampled_from(TAG_KEYS) | st.text(max_size=8)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=3),
    max_leaves=12,
)
msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # msgpack's own range
    | st.floats()
    | st.text(max_size=20)
)
msgpack_like = st.recursive(
    msgpack_scalars | st.binary(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(json_keys | st.binary(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def loads_or_corrupt(serializer: Any, raw: bytes) -> None:
    """The loader's whole promise for ``raw``."""
    try:
        data = serializer.loads(raw)
    except CorruptSessionDataError:
        return
    assert type(data) is dict
    again = serializer.dumps(data)  # what loads can always be saved (SerializationError fails)
    assert serializer.loads(again) == data


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
@settings(max_examples=300)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_are_corrupt(serializer: Any, raw: bytes) -> None:
    loads_or_corrupt(serializer, raw)


@settings(max_examples=300)
@given(value=json_like)
def test_arbitrary_json_loads_or_is_corrupt(value: Any) -> None:
    # allow_nan: NaN and Infinity are what Python's own json writes for them.
    loads_or_corrupt(SERIALIZERS[0], json.dumps(value, allow_nan=True).encode("utf-8"))
    loads_or_corrupt(SERIALIZERS[0], json.dumps({"k": value}, ensure_ascii=True).encode())


@settings(max_examples=300)
@given(value=msgpack_like)
def test_arbitrary_msgpack_loads_or_is_corrupt(value: Any) -> None:
    loads_or_corrupt(SERIALIZERS[1], msgpack.packb(value, use_bin_type=True))
    loads_or_corrupt(SERIALIZERS[1], msgpack.packb({"k": value}, use_bin_type=True))


@settings(max_examples=200)
@given(tag=st.sampled_from(TAG_KEYS), payload=msgpack_like, wrap=st.booleans())
def test_any_payload_under_any_tag_loads_or_is_corrupt(tag: str, payload: Any, wrap: bool) -> None:
    stored = {"k": {tag: payload}} if wrap else {tag: payload}
    loads_or_corrupt(SERIALIZERS[1], msgpack.packb(stored, use_bin_type=True))
    try:
        raw = json.dumps(stored, allow_nan=True).encode()
    except TypeError:  # bytes: JSON has none
        return
    loads_or_corrupt(SERIALIZERS[0], raw)


# -- round trips of every supported value ---------------------------------------------------
offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)).map(
        lambda delta: dt.timedelta(minutes=delta // dt.timedelta(minutes=1))
    ),
)
hashable = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    # Fixed offsets: a zone's name is not stored (the offset is), and an aware datetime
    # in an ambiguous hour of a named zone is equal to no datetime of another zone.
    | st.datetimes(timezones=st.none() | st.just(dt.UTC) | offsets)
    | st.dates()
    | st.times()
    | st.timedeltas()
)
supported = st.recursive(
    hashable,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(TAG_KEYS) | st.text(max_size=6), inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.sets(hashable, max_size=3)
        | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=16,
)


def same(left: Any, right: Any) -> bool:
    """Equal, and of the same types all the way down (1, 1.0 and True are not the same)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dt.datetime):
        return left == right and left.utcoffset() == right.utcoffset()
    return bool(left == right)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
@settings(max_examples=200)
@given(data=st.dictionaries(st.sampled_from(TAG_KEYS) | st.text(max_size=8), supported))
def test_supported_values_round_trip(serializer: Any, data: dict[str, Any]) -> None:
    assert same(serializer.loads(serializer.dumps(data)), data)


anything = st.recursive(
    hashable
    | st.floats()
    | st.text(alphabet=st.characters(codec=None, categories=None), max_size=6)
    | st.builds(object)
    | st.complex_numbers(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
    ),
    max_leaves=10,
)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
@settings(max_examples=300)
@given(data=st.dictionaries(hashable, anything, max_size=4))
def test_dumps_gives_bytes_or_a_serialization_error(serializer: Any, data: Any) -> None:
    try:
        raw = serializer.dumps(data)
    except SerializationError:
        return
    assert serializer.loads(raw) is not None


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=IDS)
@settings(max_examples=30)
@given(depth=st.integers(min_value=90, max_value=2000))
def test_nesting_is_refused_on_save_exactly_where_it_is_refused_on_load(
    serializer: Any, depth: int
) -> None:
    data = {"k": nested(depth)}
    try:
        raw = serializer.dumps(data)
    except SerializationError:
        if serializer.name == "json":
            with pytest.raises(CorruptSessionDataError):
                serializer.loads(b'{"k":' + b"[" * depth + b"1" + b"]" * depth + b"}")
        return
    assert serializer.loads(raw) == data


def test_the_examples_cover_uuid_and_decimal() -> None:
    # A guard on the strategies above: they must reach the tagged types.
    assert same(uuid.UUID(int=1), uuid.UUID(int=1)) and not same(Decimal(1), 1)
