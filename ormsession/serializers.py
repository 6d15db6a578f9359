"""Turning session data into bytes and back.

JSON with tagged types is the default: readable from any language, and decoding it can never
run code. A value of a type JSON lacks (datetime, bytes, UUID, Decimal, set, tuple, ...) is
written as a one-key object whose key starts with a space, e.g. ``{" dt": "2024-05-01T..."}``;
a user's own one-key dict whose key starts with a space is escaped, so no data is ever
mistaken for a tag. msgpack uses the same tagging, with bytes kept native.

Stored bytes are untrusted input (anyone who can write to the store, or a bug, can put
anything there): a loader raises :class:`CorruptSessionDataError` and nothing else, and
refuses what :meth:`dumps` could never have written (non-finite floats, lone surrogates,
nesting deeper than :data:`MAX_DEPTH`), so a session that loads can always be saved again.
A dumper raises :class:`SerializationError` and nothing else.

Pickle is never the default and never chosen by settings: only an app that constructs
:class:`UnsafePickleSerializer` itself can make stored bytes run code on load.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import pickle
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from ormsession.errors import CorruptSessionDataError, SerializationError

__all__ = [
    "MAX_DEPTH",
    "JSONSerializer",
    "MsgpackSerializer",
    "Serializer",
    "Tag",
    "UnsafePickleSerializer",
    "serializer_by_name",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns a session's top-level dict into bytes and back."""

    name: str

    def dumps(self, data: Mapping[str, Any]) -> bytes:
        """Raise :class:`SerializationError` for a value it cannot represent."""
        ...

    def loads(self, raw: bytes) -> dict[str, Any]:
        """Raise :class:`CorruptSessionDataError` for bytes it cannot decode."""
        ...


@dataclass(frozen=True, slots=True)
class Tag:
    """A type JSON lacks, written as ``{" <key>": encode(value)}``."""

    key: str
    type: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _markup_tag() -> list[Tag]:
    # Flask's flash() and templates put Markup in sessions; keep it Markup on the way back.
    try:
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - markupsafe ships with Flask and Jinja
        return []
    return [Tag("m", Markup, str, Markup)]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: str) -> bytes:
    return base64.b64decode(value.encode("ascii"), validate=True)


# Order matters: bool before int is handled by exact-type dispatch; datetime is a date
# subclass, so lookups use type(value) exactly, then fall back to isinstance in this order.
_STANDARD_TAGS: list[Tag] = [
    Tag("tup", tuple, list, tuple),
    Tag("set", set, list, set),
    Tag("fset", frozenset, list, frozenset),
    Tag("b", bytes, _b64, _unb64),
    Tag("dt", dt.datetime, dt.datetime.isoformat, dt.datetime.fromisoformat),
    Tag("d", dt.date, dt.date.isoformat, dt.date.fromisoformat),
    Tag("t", dt.time, dt.time.isoformat, dt.time.fromisoformat),
    Tag(
        "td",
        dt.timedelta,
        lambda v: [v.days, v.seconds, v.microseconds],
        lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    ),
    Tag("u", uuid.UUID, str, uuid.UUID),
    Tag("dec", Decimal, str, Decimal),
]
_BIG_INT = Tag("int", int, str, int)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_ESCAPE = " di"  # wraps a user dict that would otherwise look like a tag
_CONTAINER_TAGS = {"tup", "set", "fset"}
_PLAIN = (str, int, float, bool, type(None))
_SCALARS = frozenset({str, int, bool, type(None)})
_STR_ONLY = frozenset({str})
# A subclass of a plain type stores as the value it holds, read through the base type's own
# slot as json.dumps reads it: str(), int() and float() call the subclass's overrides, and
# a (str, Enum) member's str() is "Color.RED", not "red".
_PLAIN_BASES: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
)

#: How deeply the stored form may nest containers: each dict and list counts one level, so
#: a tuple, set or frozenset (a tagged object around a list) counts two, and so does a dict
#: escaped because its one key starts with a space. Ruby's JSON parser stops at the same
#: depth; deeper data would meet Python's recursion limit at a depth that depends on the
#: caller's stack, so it is refused on save and treated as corrupt on load.
MAX_DEPTH = 100
#: A JSON escape of a UTF-16 surrogate (``\ud800``...), the only way a lone surrogate,
#: which UTF-8 cannot encode, gets into decoded text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Tagger:
    """Walks values, replacing tagged types by one-key dicts and back."""

    def __init__(self, extra_tags: list[Tag], *, native_bytes: bool) -> None:
        tags = [*extra_tags, *_markup_tag(), *_STANDARD_TAGS]
        if native_bytes:
            tags = [tag for tag in tags if tag.type is not bytes]
        self._tags = tags
        self._by_type = {tag.type: tag for tag in reversed(tags)}
        self._by_key = {" " + tag.key: tag for tag in tags}
        self._by_key[" int"] = _BIG_INT
        self._native_bytes = native_bytes
        # Values that encode as themselves, checked inline to spare a call per item
        # (msgpack's ints still go through encode() for the 64-bit range check).
        self._scalars = _SCALARS - {int} if native_bytes else _SCALARS
        # What a loader hands back as is (bytes only where the format has them natively;
        # floats are checked one by one, msgpack can hold infinities).
        self._loaded_scalars = _SCALARS | {bytes} if native_bytes else _SCALARS | {float}

    def encode(self, value: Any, depth: int) -> Any:
        """``value`` in its stored form; ``depth``: the level a container in it would be at."""
        kind = type(value)
        if kind in _PLAIN:
            if kind is int and self._native_bytes and not _INT64_MIN <= value <= _UINT64_MAX:
                return {" int": str(value)}  # msgpack integers stop at 64 bits
            if kind is float and not math.isfinite(value):
                raise SerializationError(f"cannot store the float {value!r} (not finite)")
            return value
        if kind is bytes and self._native_bytes:
            return value
        if kind is list:
            if depth > MAX_DEPTH:
                raise _too_deep_to_store()
            if self._scalars.issuperset(map(type, value)):  # the check runs in C
                return value  # nothing to tag: the encoder only reads it
            return [self.encode(item, depth + 1) for item in value]
        if kind is dict:
            return self.encode_mapping(value, depth)
        tag = self._by_type.get(kind) or self._find_tag(value)
        if tag is None:
            # str/int subclasses (StrEnum, IntEnum, lazy strings) store as their base value.
            for base, plain in _PLAIN_BASES:
                if isinstance(value, base):
                    return self.encode(plain(value), depth)
        if tag is None:
            raise SerializationError(
                f"cannot store a value of type {kind.__qualname__} in a session "
                "(supported: JSON types, datetime, date, time, timedelta, bytes, UUID, "
                "Decimal, set, frozenset, tuple; or register a Tag)"
            )
        if tag.key in _CONTAINER_TAGS:
            if depth >= MAX_DEPTH:  # the members' list is one level down
                raise _too_deep_to_store()
            encoded = self._encode_members(tag, value, depth + 2)
        else:
            if depth > MAX_DEPTH:
                raise _too_deep_to_store()
            encoded = tag.encode(value)
        return {" " + tag.key: encoded}

    def _find_tag(self, value: Any) -> Tag | None:
        for tag in self._tags:
            if isinstance(value, tag.type):
                return tag
        return None

    def _encode_members(self, tag: Tag, value: Any, depth: int) -> list[Any]:
        members = [self.encode(item, depth) for item in value]
        if tag.key != "tup":
            # Sets iterate in hash order, which differs between processes; sorting keeps
            # the bytes of an unchanged session identical, so it is not rewritten.
            try:
                members.sort()
            except TypeError:
                members.sort(key=lambda item: json.dumps(item, sort_keys=True, default=str))
        return members

    def encode_mapping(self, value: Mapping[Any, Any], depth: int = 1) -> dict[str, Any]:
        """A mapping (a session's top level, or a dict inside it, at level ``depth``) ready
        for the encoder.

        Every write runs this, so the usual items (scalars, flat lists of them) are checked
        in C and passed through without a call each.
        """
        if not _STR_ONLY.issuperset(map(type, value)):
            bad = next(key for key in value if type(key) is not str)
            raise SerializationError(
                f"session dict keys must be str, got {type(bad).__qualname__} {_short_repr(bad)}"
            )
        escaped = len(value) == 1 and next(iter(value)).startswith(" ")
        if depth + escaped > MAX_DEPTH:
            raise _too_deep_to_store()
        depth += 1 + escaped  # where the items' containers are stored
        encoded: dict[str, Any] = {}
        # A flat list at the deepest level is still one level too deep: no shortcut there.
        scalars = self._scalars if depth <= MAX_DEPTH else frozenset()
        for key, item in value.items():
            kind = type(item)
            if kind in scalars or (kind is list and scalars.issuperset(map(type, item))):
                encoded[key] = item
            else:
                encoded[key] = self.encode(item, depth)
        return {_ESCAPE: encoded} if escaped else encoded

    def decode(self, value: Any, depth: int) -> Any:
        """The stored form ``value`` (at level ``depth`` if a container) back to data."""
        kind = type(value)
        if kind in self._loaded_scalars:
            return value
        if kind is list:
            if depth > MAX_DEPTH:
                raise _too_deep()
            if self._loaded_scalars.issuperset(map(type, value)):  # checked in C
                return value
            return [self.decode(item, depth + 1) for item in value]
        if kind is dict:
            if depth > MAX_DEPTH:
                raise _too_deep()
            return self._decode_dict(value, depth)
        if kind is float:
            if not math.isfinite(value):  # msgpack has them; the JSON decoder refuses them
                raise CorruptSessionDataError("a stored float is not finite")
            return value
        # msgpack extension types (Timestamp, ExtType) are nothing dumps() writes.
        raise CorruptSessionDataError(f"a stored value of type {kind.__qualname__}")

    def _decode_dict(self, value: dict[Any, Any], depth: int) -> Any:
        if self._native_bytes and not _STR_ONLY.issuperset(map(type, value)):
            raise CorruptSessionDataError("a stored map has a key that is not a string")
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == _ESCAPE:
                if type(inner) is not dict:
                    raise CorruptSessionDataError("escaped dict is not an object")
                if depth >= MAX_DEPTH:
                    raise _too_deep()
                return self._decode_dict_items(inner, depth + 1)
            if key.startswith(" "):
                return self._decode_tag(key, inner, depth)
        if self._loaded_scalars.issuperset(map(type, value.values())):
            return value
        return {k: self.decode(v, depth + 1) for k, v in value.items()}

    def _decode_dict_items(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        if self._native_bytes and not _STR_ONLY.issuperset(map(type, value)):
            raise CorruptSessionDataError("a stored map has a key that is not a string")
        return {k: self.decode(v, depth + 1) for k, v in value.items()}

    def _decode_tag(self, key: str, inner: Any, depth: int) -> Any:
        tag = self._by_key.get(key)
        if tag is None:
            raise CorruptSessionDataError(f"unknown type tag {key.strip()!r}")
        if tag.key in _CONTAINER_TAGS:
            if type(inner) is not list:
                raise CorruptSessionDataError(f"tag {tag.key!r} needs a list")
            inner = self.decode(inner, depth + 1)
        try:
            return tag.decode(inner)
        except Exception as exc:  # an app's Tag may raise anything on a bad payload
            raise CorruptSessionDataError(
                f"bad value for tag {tag.key!r}: {type(exc).__name__}"
            ) from exc


class JSONSerializer:
    """Compact UTF-8 JSON with tagged types (the default)."""

    name = "json"

    def __init__(self, *, extra_tags: list[Tag] | None = None) -> None:
        self._tagger = _Tagger(extra_tags or [], native_bytes=False)
        # Built once: json.dumps() with options constructs an encoder on every call.
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        # NaN, Infinity and 1e999 are JSON Python reads but dumps() never writes.
        self._decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)
        self._plain_encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_not_plain
        )

    def dumps(self, data: Mapping[str, Any]) -> bytes:
        try:
            tagged = self._tagger.encode_mapping(data)
            return self._encoder.encode(tagged).encode("utf-8")
        except SerializationError:
            raise
        except Exception as exc:  # a lone surrogate, an app Tag's own failure...
            raise SerializationError(f"cannot serialize the session: {_describe(exc)}") from exc

    def loads(self, raw: bytes) -> dict[str, Any]:
        try:
            # The decoder straight on UTF-8 text: json.loads() would first sniff the bytes
            # for UTF-16/32 and skip whitespace, neither of which dumps() ever writes (a
            # BOM or padding is refused as corrupt).
            text = raw.decode("utf-8")
            decoded, end = self._decoder.raw_decode(text)
            if end != len(text):
                raise CorruptSessionDataError(f"stored session has extra data after {end} chars")
            # find(), not ``in``: CPython 3.11's ``bytes in bytes`` first tries the operand
            # as an int and raises and clears a TypeError inside, on every call.
            escapes = raw.find(92) >= 0  # a backslash: memchr, much cheaper than a find
            if escapes and _SURROGATE_ESCAPE.search(raw) is not None:
                # dumps() never writes a lone one (a pair decodes to one character).
                self._encoder.encode(decoded).encode("utf-8")
            if raw.find(b'" ') >= 0 or (escapes and raw.find(b"\\u0020") >= 0):
                return _top_level(self._tagger.decode(decoded, 1))
            # No key starts with a space, so there is no tag or escape to walk for; the depth
            # needs a walk only when there are enough brackets to be too deep.
            result = _top_level(decoded)
            if len(raw) > 2 * MAX_DEPTH and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
                _check_nesting(result)
            return result
        except CorruptSessionDataError:
            raise
        except Exception as exc:  # whatever the bytes provoke, the caller sees one type
            raise CorruptSessionDataError(f"stored session is not valid JSON: {exc}") from exc

    def unchanged(self, data: Mapping[str, Any], original: bytes) -> bool:
        """A fast "same as stored" check for data of plain JSON types only.

        The C encoder writes such data exactly as :meth:`dumps` would, so equal bytes mean
        equal data. Data with tagged types raises inside and answers False (the caller then
        does the full comparison). One blind spot, by design: an equal value replaced in
        place by a tuple or a str/int subclass encodes the same, so it reads as unchanged.
        """
        try:
            return self._plain_encoder.encode(data).encode("utf-8") == original
        except (TypeError, ValueError, RecursionError):
            return False  # dumps() then says what is wrong, if anything is


class MsgpackSerializer:
    """msgpack with the same tags (bytes stay native): smaller and faster than JSON."""

    name = "msgpack"

    def __init__(self, *, extra_tags: list[Tag] | None = None) -> None:
        try:
            import msgpack
        except ImportError as exc:
            from ormsession.errors import MissingDriverError

            raise MissingDriverError(
                "the msgpack serializer needs msgpack: pip install 'ormsession[msgpack]'"
            ) from exc
        self._msgpack = msgpack
        self._tagger = _Tagger(extra_tags or [], native_bytes=True)

    def dumps(self, data: Mapping[str, Any]) -> bytes:
        try:
            packed: bytes = self._msgpack.packb(
                self._tagger.encode_mapping(data), use_bin_type=True
            )
        except SerializationError:
            raise
        except Exception as exc:  # a lone surrogate, an app Tag's own failure...
            raise SerializationError(f"cannot serialize the session: {_describe(exc)}") from exc
        return packed

    def loads(self, raw: bytes) -> dict[str, Any]:
        try:
            decoded = self._msgpack.unpackb(raw, raw=False, strict_map_key=True)
            return _top_level(self._tagger.decode(decoded, 1))
        except CorruptSessionDataError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise CorruptSessionDataError(f"stored session is not valid msgpack: {exc}") from exc


class UnsafePickleSerializer:
    """Pickle, for apps that must read sessions written by pickle-based stores.

    Unsafe: anyone who can write to the store can run code in the app. Never selected by
    settings or URLs; an app has to construct it by name.
    """

    name = "pickle"

    def dumps(self, data: Mapping[str, Any]) -> bytes:
        try:
            return pickle.dumps(dict(data), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(str(exc)) from exc

    def loads(self, raw: bytes) -> dict[str, Any]:
        try:
            decoded = pickle.loads(raw)  # noqa: S301 -- the documented, explicit opt-in
        except Exception as exc:
            raise CorruptSessionDataError(f"stored session is not a valid pickle: {exc}") from exc
        return _top_level(decoded)


def _not_plain(value: Any) -> Any:
    raise TypeError("not a plain JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise CorruptSessionDataError("a stored number is out of the float range")
    return value


def _no_constant(name: str) -> Any:
    raise CorruptSessionDataError(f"a stored {name} (not a JSON value)")


def _too_deep_to_store() -> SerializationError:
    return SerializationError(
        f"session data nests containers more than {MAX_DEPTH} levels deep (or contains itself)"
    )


def _too_deep() -> CorruptSessionDataError:
    return CorruptSessionDataError(f"stored data nests deeper than {MAX_DEPTH} levels")


def _check_nesting(decoded: Any) -> None:
    """Refuse containers nested deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    pending = [(decoded, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        for item in value.values() if type(value) is dict else value:
            if type(item) is dict or type(item) is list:
                pending.append((item, depth + 1))


def _describe(exc: BaseException) -> str:
    """An encoding failure in a few words; never the value (it may be a secret)."""
    if isinstance(exc, UnicodeError):
        return "a str holds a lone surrogate, which UTF-8 cannot encode"
    return type(exc).__name__


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _top_level(decoded: Any) -> dict[str, Any]:
    if type(decoded) is not dict:
        raise CorruptSessionDataError("stored session is not a mapping")
    return decoded


def serializer_by_name(name: str) -> Serializer:
    """The serializer a setting names: ``json`` or ``msgpack`` (pickle is deliberately absent)."""
    if name == "json":
        return JSONSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    from ormsession.errors import ConfigurationError

    raise ConfigurationError(f"unknown serializer {name!r}: choose 'json' or 'msgpack'")
