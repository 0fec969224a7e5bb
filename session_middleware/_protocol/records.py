"""The session record stored in Redis: a HASH of JSON values, validated on the way in and out.

One field per top-level session key (``d:<key>``, holding the value's JSON), so a write
sends only the keys it changed and a script applies them to the record as it is stored
then: writers of different keys never lose each other's changes, and Lua never decodes
JSON. Reserved one-letter fields hold the metadata::

    c  created (unix seconds)       x  absolute expiry       r  last refreshed
    u  the user id (JSON), if any   e  the user's epoch      m  device info (JSON)

With a cipher, the user id, the device info and every value are encrypted one by one.

Two adjacent releases serve the same records at once, in both directions: a metadata
field this release does not know (one a later release added) is kept as stored, ignored,
and written again wherever this release writes the whole record (a rotation); and a
release adds a field only with a default, so a record without it (from the previous
release) reads as before.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import operator
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from ..errors import CorruptRecord, SessionTooLarge
from .key_layout import MAX_USER_ID, UserId, valid_user_id

DATA_PREFIX = "d:"
CREATED, EXPIRES, REFRESHED, USER, EPOCH, EXTRA = "c", "x", "r", "u", "e", "m"
_DATA_START = len(DATA_PREFIX)
_NO_INFO: Mapping[str, Any] = MappingProxyType({})
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z, the last second datetime can hold
MAX_NESTING = 64
OWNERS_CACHED = 4096  # users whose id and epoch, as stored, are remembered decoded
_MAX_USER_JSON = 6 * MAX_USER_ID + 2  # a user id's JSON: each character at most \uXXXX
LAZY_FROM = 2048  # bytes: a larger record's values are decoded one by one, when read
# (without encryption: with it, every value is authenticated when the record is read)
_EPOCH = re.compile(r"[0-9a-zA-Z_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Record:
    """One session as stored: each data key's JSON, when it was created, ends and was last
    refreshed (epoch seconds), and the user and epoch it is bound to.

    The data stays JSON text until a value is asked for (`value`): a request that reads two
    keys of a large session decodes two values.
    """

    stored: Mapping[str, str]  # each data key's JSON (decrypted), as stored
    created: float
    expires: float
    refreshed: float
    user_id: UserId | None = None
    epoch: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # read-only when decoded
    # Metadata fields of a later release, as stored: kept, never read.
    unknown: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str, default: Any = None) -> Any:
        """The decoded value of data key `key` (`default` if absent); CorruptRecord for a
        value this package could not have written."""
        text = self.stored.get(key)
        return default if text is None else decode_value(text)


# Record's twin, not frozen: a Record is built as one (its __init__ sets each field as a plain
# attribute, where a frozen one's calls object.__setattr__, about a thousand instructions a
# field) and made a Record by its class: the same slots, so the same layout.
_Building = dataclasses.make_dataclass(
    "_Building", [(each.name, Any) for each in dataclasses.fields(Record)], slots=True
)


# A Record's fields, in order.
Parts = tuple[
    Mapping[str, str],
    float,
    float,
    float,
    UserId | None,
    str | None,
    Mapping[str, Any],
    Mapping[str, str],
]


def _record(parts: Parts) -> Record:
    """Record(*parts), at a third of the cost."""
    record = _Building(*parts)
    record.__class__ = Record
    return record  # type: ignore[no-any-return]


def new_record(
    stored: Mapping[str, str],
    now: float,
    expires: float,
    user_id: UserId | None,
    extra: Mapping[str, Any] | None = None,
    unknown: Mapping[str, str] | None = None,
) -> Record:
    """The record of a session created or logged in at `now`, unstamped (a login stamps it
    inside Redis), built once with all it holds."""
    return _record((stored, now, expires, now, user_id, None, extra or {}, unknown or {}))


class Cipher(Protocol):
    """Encryption at rest (see ../_encryption.py): bytes in, ASCII token out, and back."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


# -- values ---------------------------------------------------------------------------------


def check_json_value(key: object, value: object, max_bytes: int | None = None) -> None:
    """Raise TypeError, naming the key, unless JSON can hold the value faithfully; raise
    SessionTooLarge if the value alone is over `max_bytes` once encoded."""
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__} ({key!r})")
    _check(value, f"session[{key!r}]", 0)
    if max_bytes is not None and isinstance(value, (str, list, tuple, dict)):
        size = len(to_json(value).encode())
        if size > max_bytes:
            raise SessionTooLarge(f"session[{key!r}] takes", size, max_bytes)


def _check(value: object, where: str, depth: int) -> None:
    if not _storable(value, depth):
        _explain(value, where, depth)


def _storable(value: object, depth: int) -> bool:
    """Whether JSON holds the value faithfully: `_explain`'s rules, with no message built."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= MAX_NESTING:
        return False
    if isinstance(value, (list, tuple)):
        for item in value:  # noqa: SIM110 - a loop, not a generator for every list
            if not _storable(item, depth + 1):
                return False
        return True
    if isinstance(value, dict):
        for inner_key, item in value.items():
            if not isinstance(inner_key, str) or not _storable(item, depth + 1):
                return False
        return True
    return False


def _explain(value: object, where: str, depth: int) -> None:
    """TypeError, naming where in the value JSON fails to hold it."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value!r} cannot be stored (JSON has no NaN or Infinity)")
        return
    if depth >= MAX_NESTING:
        raise TypeError(f"{where}: nested deeper than {MAX_NESTING} levels")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _explain(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for inner_key, item in value.items():
            if not isinstance(inner_key, str):
                raise TypeError(
                    f"{where}: dict key {inner_key!r} is a {type(inner_key).__name__}; "
                    "JSON object keys must be str"
                )
            _explain(item, f"{where}[{inner_key!r}]", depth + 1)
        return
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in the session "
        "(only JSON values: str, int, float, bool, None, list, dict)"
    )


# json.dumps with these options builds an encoder on every call: built once here.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def to_json(value: object) -> str:
    """The one JSON spelling of a value: a value unchanged since it was read encodes to
    the text it was read from, which is how a write tells what changed."""
    if type(value) is int:
        return int.__repr__(value)  # what the encoder writes for an int, without its set-up
    return _ENCODE(value)


def checked_json(key: str, value: object) -> str:
    """`to_json`, with TypeError naming the key for what JSON cannot hold."""
    try:
        return to_json(value)
    except (TypeError, ValueError):
        _check(value, f"session[{key!r}]", 0)
        raise


def valid_epoch(epoch: object) -> bool:
    if type(epoch) is str and epoch.isascii() and len(epoch) <= 64 and epoch.encode().isalnum():
        return True  # letters and digits, the usual epoch: half the regular expression's cost
    return isinstance(epoch, str) and _EPOCH.fullmatch(epoch) is not None


# -- encoding ---------------------------------------------------------------------------------


class FieldCodec:
    """Field values in and out of Redis: JSON text, encrypted when there is a cipher."""

    def __init__(self, cipher: Cipher | None) -> None:
        self.cipher = cipher

    def seal(self, text: str, field: str) -> str:
        """`text` as stored in `field`: encrypted together with the field's name, so that
        a token moved to another field (another key, or the user id) does not open."""
        if self.cipher is None:
            return text
        return self.cipher.encrypt(f"{field}\x00{text}".encode()).decode("ascii")

    def open(self, value: str, field: str) -> str:
        if self.cipher is None:
            return value
        try:
            plain = self.cipher.decrypt(value.encode("ascii")).decode()
        except Exception as error:  # the cipher's own error types: a wrong key or tampering
            raise CorruptRecord("cannot decrypt") from error
        # The last NUL: a session key may hold one, JSON text never does (it escapes it).
        sealed_for, separator, text = plain.rpartition("\x00")
        if not separator or sealed_for != field:
            raise CorruptRecord("a value sealed for another field")
        return text

    def data_fields(
        self, changes: Iterable[tuple[str, str]], pairs: list[str] | None = None
    ) -> list[str]:
        """Flat field/value pairs for data keys and their JSON text (added to `pairs`)."""
        if pairs is None:
            pairs = []
        if self.cipher is None:
            for key, text in changes:
                pairs += (DATA_PREFIX + key, text)
            return pairs
        for key, text in changes:
            pairs += (DATA_PREFIX + key, self.seal(text, DATA_PREFIX + key))
        return pairs

    def fields(self, record: Record) -> list[str]:
        """Every field of a new record, as flat field/value pairs; the epoch is left to the
        caller (a login stamps it inside Redis)."""
        pairs = [CREATED, _number(record.created), EXPIRES, _number(record.expires)]
        pairs += (REFRESHED, _number(record.refreshed))
        if record.user_id is not None:
            pairs += (USER, self.seal(to_json(record.user_id), USER))
        if record.extra:
            pairs += (EXTRA, self.seal(to_json(dict(record.extra)), EXTRA))
        if record.epoch is not None:
            if not valid_epoch(record.epoch):
                raise ValueError("invalid epoch value")
            pairs += (EPOCH, record.epoch)
        for key, text in record.stored.items():
            field = DATA_PREFIX + key
            pairs += (field, self.seal(text, field))
        for name, value in record.unknown.items():
            pairs += (name, value)
        return pairs


def refreshed_field(now: float) -> list[str]:
    return [REFRESHED, _number(now)]


def grows(
    stored: Mapping[str, str], changed: Iterable[tuple[str, str]], removed: Iterable[str]
) -> bool:
    """Whether setting `changed` (data keys and their JSON) and deleting `removed` make the
    record as loaded (`stored`) larger: a guess for the write script (lua_scripts.WRITE),
    which reads all of a record that grows. Counted on the JSON, not on what is stored
    (ciphertext, bytes): the script checks."""
    added = 0
    for key, text in changed:
        old = _stored_length(stored, key)
        added += len(text) - (old if old is not None else -_DATA_START - len(key))
    for key in removed:
        old = _stored_length(stored, key)
        if old is not None:
            added -= _DATA_START + len(key) + old
    return added > 0


def _stored_length(stored: Mapping[str, str], key: str) -> int | None:
    """The length of `key`'s value as loaded, None if it has none; a large record's value
    is not decoded for it (nor refused if it would not decode)."""
    if isinstance(stored, ReceivedTexts):
        return stored.received_length(key)
    old = stored.get(key)
    return None if old is None else len(old)


def fields_size(pairs: Sequence[str]) -> int:
    """The bytes the field/value pairs take once encoded (UTF-8)."""
    return len("".join(pairs).encode())


def _number(value: float) -> str:
    """Tens of microseconds, at a fixed width (until 2286), so a refresh never grows a
    record: 15 significant digits, which float() reads exactly on its fast path (a 16th
    digit takes its slow path, twice the cost of a record's timestamps on a memo miss)."""
    return f"{value:.5f}"


# -- decoding ---------------------------------------------------------------------------------


def flat_fields(reply: Any) -> list[Any]:
    """A HGETALL reply as flat field/value pairs: redis-py gives a dict for the command,
    and a flat list from inside a script."""
    if isinstance(reply, Mapping):
        return [item for pair in reply.items() for item in pair]
    if isinstance(reply, (list, tuple)):
        return list(reply)
    raise CorruptRecord("not a hash")


def decode(
    flat: Sequence[Any], codec: FieldCodec, max_bytes: int | None = None, length: int = -1
) -> Record:
    """The record that HGETALL's flat field/value pairs hold, its data left as JSON text;
    CorruptRecord for metadata this package could not have written, a name or value that
    is not UTF-8 text, a value that does not open with the cipher, or a record larger than
    `max_bytes`. A data value is checked when it is decoded (`decode_value`); `length`: the
    items' total length, if the caller has it already."""
    if len(flat) % 2:
        raise CorruptRecord("not a record")
    try:
        return _decoded(flat, codec, max_bytes, length)
    except TypeError:  # not all bytes: text from a client that decodes replies, or garbage
        flat = list(map(_as_bytes, flat))
        return _decoded(flat, codec, max_bytes, sum(map(len, flat)))


def _decoded(flat: Sequence[Any], codec: FieldCodec, max_bytes: int | None, length: int) -> Record:
    """`decode` of a reply of bytes; TypeError if an item is not bytes (`decode` then reads
    the reply as the bytes Redis holds)."""
    if length < 0:
        length = sum(map(len, flat))
    names = tuple(flat[::2])
    if len(names) <= LAYOUT_FIELDS and (length <= LAZY_FROM or sum(map(len, names)) <= LAZY_FROM):
        layout = _known_layout(names)
    else:
        layout = _layout(names)
    received = flat[1::2]
    # A large record's values are left as received (each decoded when it is read), unless
    # every one is to be authenticated now.
    lazy = length > LAZY_FROM and codec.cipher is None
    if lazy:
        if not _BYTES.issuperset(map(type, received)):
            raise TypeError("not bytes")
        values: list[Any] = [*received, None]
    else:
        try:
            values = [*map(bytes.decode, received), None]  # None: the absent fields' value
        except UnicodeDecodeError as error:
            raise CorruptRecord("not UTF-8") from error
    if max_bytes is not None and length > max_bytes:
        raise CorruptRecord(f"larger than max_session_bytes ({length} bytes)")
    metadata = layout.metadata(values)
    if lazy:
        metadata = tuple(map(_optional_text, metadata))
    created, expires, refreshed, user, epoch, extra_text = metadata
    times = _timestamps(created, expires, refreshed)
    stored: Mapping[str, str]
    if codec.cipher is not None:  # every value authenticated now: one altered drops the record
        stored = {key: codec.open(values[at], DATA_PREFIX + key) for key, at in layout.data}
        user = None if user is None else codec.open(user, USER)
        extra_text = None if extra_text is None else codec.open(extra_text, EXTRA)
    elif lazy:
        stored = ReceivedTexts({key: values[at] for key, at in layout.data})
    else:
        stored = {key: values[at] for key, at in layout.data}
    user_id = _owner(user, epoch) if user is not None or epoch is not None else None
    extra = _NO_INFO if extra_text is None else _device_info(extra_text)
    unknown = _NO_INFO
    if layout.unknown:  # a later release's metadata: kept as it is
        unknown = {name: _received_text(values[at]) for name, at in layout.unknown}
    return _record((stored, *times, user_id, epoch, extra, unknown))


_METADATA = (CREATED, EXPIRES, REFRESHED, USER, EPOCH, EXTRA)
LAYOUTS_KNOWN = 256  # record layouts remembered (see _known_layout)
LAYOUT_FIELDS = 256


@dataclass(slots=True)
class _Layout:
    """Where each field's value is in a HGETALL reply (its index among the values), for
    every record whose fields have the same names in the same order: a session's from one
    write to the next, and every session that holds the same keys. Found once for those
    names, so a record read for the first time decodes only its values."""

    metadata: Callable[[list[Any]], tuple[Any, ...]]  # c, x, r, u, e, m; None if absent
    data: tuple[tuple[str, int], ...]  # each data key, and its value's index
    unknown: tuple[tuple[str, int], ...]  # metadata fields of a later release


def _layout(names: tuple[bytes, ...]) -> _Layout:
    """The layout of a record whose fields are `names` (a name twice: its last value, as a
    dict of the pairs would hold); TypeError if one is not bytes, CorruptRecord if one is
    not UTF-8."""
    if not _BYTES.issuperset(map(type, names)):
        raise TypeError("not bytes")
    try:
        texts = list(map(bytes.decode, names))
    except UnicodeDecodeError as error:
        raise CorruptRecord("not UTF-8") from error
    at = dict(zip(texts, range(len(texts)), strict=True))
    data = tuple(
        [
            (name[_DATA_START:], index)
            for name, index in at.items()
            if name[:_DATA_START] == DATA_PREFIX
        ]
    )
    metadata = operator.itemgetter(*map(at.get, _METADATA, _ABSENT))
    unknown: tuple[tuple[str, int], ...] = ()
    if len(data) + len(_METADATA_NAMES.intersection(at)) < len(at):
        unknown = tuple(
            [
                (name, index)
                for name, index in at.items()
                if name[:_DATA_START] != DATA_PREFIX and name not in _METADATA_NAMES
            ]
        )
    return _Layout(metadata, data, unknown)


_METADATA_NAMES = frozenset(_METADATA)
_ABSENT = (-1,) * len(_METADATA)  # the index of the None after the values
# Remembered for records of at most LAYOUT_FIELDS fields, whose names take at most LAZY_FROM
# bytes: what planted records make a worker remember stays bounded (some 12 MB at most).
_known_layout = functools.lru_cache(maxsize=LAYOUTS_KNOWN)(_layout)


def decode_value(text: str) -> Any:
    """A data value from its stored JSON; CorruptRecord unless this package could have
    written it: JSON with no NaN, Infinity or lone surrogate, nested less than MAX_NESTING
    levels (what a write refuses).

    A short text that decodes to an immutable value (a string, a number, true, false,
    null) is remembered, and read again without decoding: the same values come back on
    every request of a session (a user id, a theme, a flag)."""
    value = _SCALARS.get(text, _UNSEEN)
    if value is not _UNSEEN:
        return value
    value = _json(text)
    if text.count("[") + text.count("{") >= MAX_NESTING and _nests_too_deeply((value,)):
        raise CorruptRecord("nested too deeply")
    if type(value) in _SCALAR_TYPES and len(text) <= SCALAR_TEXT_LENGTH:
        if len(_SCALARS) >= SCALARS_REMEMBERED:
            _SCALARS.clear()
        _SCALARS[text] = value
    return value


SCALARS_REMEMBERED = 4096
SCALAR_TEXT_LENGTH = 128  # characters: what is remembered stays under a few MB
_SCALARS: dict[str, Any] = {}  # JSON text -> its immutable value
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_UNSEEN = object()


def _nests_too_deeply(values: Iterable[Any]) -> bool:
    """Whether a decoded value holds a list or dict MAX_NESTING levels down, which a write
    refuses (`_check`). Level by level, visiting lists and dicts only: what the JSON
    decoder gives holds nothing else that `_check` could refuse. A list or dict that holds
    no list or dict (the leaves, most of them) is told in one pass in C."""
    level = [value for value in values if type(value) in _CONTAINERS]
    for _ in range(MAX_NESTING):
        if not level:
            return False
        deeper: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            if not _CONTAINER_TYPES.isdisjoint(map(type, children)):
                deeper += [child for child in children if type(child) in _CONTAINERS]
        level = deeper
    return bool(level)


_CONTAINERS = (list, dict)
_CONTAINER_TYPES = frozenset(_CONTAINERS)


_BYTES = frozenset((bytes,))


def _as_bytes(item: Any) -> bytes:
    """An item of a reply as the bytes Redis holds (and counts, for the size limit); a lone
    surrogate in text stays in them, as invalid UTF-8."""
    if isinstance(item, str):
        return item.encode("utf-8", "surrogatepass")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise CorruptRecord("not a string")


def _received_text(item: str | bytes) -> str:
    return _text(item) if isinstance(item, bytes) else item


def _optional_text(item: bytes | None) -> str | None:
    return None if item is None else _text(item)


def _text(item: bytes) -> str:
    try:
        return item.decode()
    except UnicodeDecodeError as error:
        raise CorruptRecord("not UTF-8") from error


def _json(text: str) -> Any:
    if text[:1] == '"' and text.find('"', 1) == len(text) - 1 and "\\" not in text:
        if text.isprintable():  # no control character: JSON's string is the text inside
            return text[1:-1]
    elif text.isdigit() and text.isascii() and len(text) <= _SHORT and text[:1] != "0":
        return int(text)
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        raise CorruptRecord("not JSON") from error
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate decodes, but could never be written back
            to_json(value).encode("utf-8")
        except UnicodeEncodeError as error:
            raise CorruptRecord("a lone surrogate") from error
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SHORT = 18  # digits: a plain int, decoded without the JSON decoder


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


# One decoder, built once: json.loads builds a new one for every call given hooks.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _timestamps(
    created_text: str | None, expires_text: str | None, refreshed_text: str | None
) -> tuple[float, float, float]:
    try:
        created = float(created_text)  # type: ignore[arg-type]
        expires = float(expires_text)  # type: ignore[arg-type]
        # Refreshed is created's text until the first refresh: the same text, the same float.
        same = refreshed_text == created_text
        refreshed = created if same else float(refreshed_text)  # type: ignore[arg-type]
    except TypeError:
        raise CorruptRecord("missing timestamps") from None
    except ValueError:
        raise CorruptRecord("bad timestamps") from None
    # Compared with floats: a float compared with an int costs twice as much.
    in_range = 0.0 <= created <= MAX_TIMESTAMP and 0.0 <= expires <= MAX_TIMESTAMP
    if not (in_range and 0.0 <= refreshed <= MAX_TIMESTAMP):  # NaN fails this too
        raise CorruptRecord("a timestamp out of range")
    return created, expires, refreshed


@functools.lru_cache(maxsize=OWNERS_CACHED)
def _owner(user: str | None, epoch: str | None) -> UserId | None:
    """The user id that `user` (JSON) holds, the record's `epoch` checked with it: the same
    for every session of a user, so decoded once. Only immutable ids are valid (str, int),
    so the one remembered can be shared. Text longer than any user id's JSON (which a
    planted record could pad with spaces) is refused, so what is remembered stays small."""
    if user is not None and len(user) > _MAX_USER_JSON:
        raise CorruptRecord("bad user id")
    user_id = None if user is None else _json(user)
    if user_id is not None and not valid_user_id(user_id):
        raise CorruptRecord("bad user id")
    if (user_id is not None or epoch is not None) and not valid_epoch(epoch):
        raise CorruptRecord("bad epoch")
    return user_id


@functools.lru_cache(maxsize=1024)
def _device_info(text: str) -> Mapping[str, Any]:
    """The device info (a JSON object) of `text`, read-only: a session's stays the same
    from one read to the next, so it is decoded once."""
    info = _json(text)
    if type(info) is not dict:
        raise CorruptRecord("device info is not an object")
    return MappingProxyType(info)


class ReceivedTexts(Mapping[str, str]):
    """The data of a large record without encryption: each value kept as Redis sent it
    (bytes, as a rule) and made text (UTF-8) the first time it is asked for, so a request
    that reads one key of a 100 KB session does not decode the other 99 KB. Asking for a
    value that is not UTF-8 raises CorruptRecord, as a value that is not JSON does when it
    is decoded (`decode_value`)."""

    __slots__ = ("_received", "_texts")

    def __init__(self, received: dict[str, Any]) -> None:
        self._received = received  # data key -> its field's value, as received
        self._texts: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = _received_text(self._received[key])
        return text

    def received_length(self, key: str) -> int | None:
        """The length of `key`'s value as received, None if there is none."""
        received = self._received.get(key)
        return None if received is None else len(received)

    def __contains__(self, key: object) -> bool:
        return key in self._received

    def __iter__(self) -> Iterator[str]:
        return iter(self._received)

    def __len__(self) -> int:
        return len(self._received)

    def __repr__(self) -> str:
        return f"<{len(self)} session values, each decoded when read>"


class RecordReader:
    """Decodes records, remembering the most recently read ones.

    A session read again is usually field for field what was read before (it changes on a
    write, or at the refresh interval), so its metadata is parsed and checked once, and
    the reads of the same fields share one Record, which cannot be changed (frozen); its
    data is JSON text, which each Session decodes into values of its own. A write that
    replaced values tells it the record it left (`written`): the read after it is found too.
    """

    def __init__(
        self,
        cipher: Cipher | None,
        max_bytes: int | None = None,
        max_entries: int = 512,
        max_length: int = 2048,
    ) -> None:
        self.codec = FieldCodec(cipher)
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_length = max_length  # larger records are decoded every time
        self._known: OrderedDict[tuple[Any, ...], Record] = OrderedDict()

    def read(self, flat: Sequence[Any]) -> Record:
        """The Record of a HGETALL reply (the remembered one, if the reply is); CorruptRecord
        as decode."""
        try:
            length = sum(map(len, flat))
        except TypeError:  # not a reply of strings: decode says what is wrong
            return decode(flat, self.codec, self.max_bytes)
        if length > self.max_length:
            return decode(flat, self.codec, self.max_bytes, length)
        key = tuple(flat)
        known = self._known.get(key)
        if known is None:
            known = decode(flat, self.codec, self.max_bytes, length)
            self._remember(key, known)
            return known
        try:  # noqa: SIM105 (contextlib.suppress would cost a with block on every hit)
            self._known.move_to_end(key)
        except KeyError:  # another thread's read pushed it out just now
            pass
        return known

    def _remember(self, key: tuple[Any, ...], record: Record) -> None:
        known = self._known
        known[key] = record
        if len(known) > self.max_entries:
            known.popitem(last=False)

    def written(
        self,
        flat: Sequence[Any],
        record: Record,
        pairs: Sequence[str],
        changed: Iterable[tuple[str, str]],
    ) -> None:
        """Remember what Redis holds after a write: `record` (read as `flat`) was written
        with the field/value `pairs` (as sent: the refresh and the `changed` data keys'
        JSON, encrypted or not) and nothing else, no field deleted and no new stamp.

        A write that only replaces values leaves every field where it was, so the next read
        of the session gets `flat` with the new values, the record below, and finds it here
        instead of decoding it. When it gets anything else (a field added, another request's
        write, a hash Redis re-encoded), it finds no match and decodes what it got.

        Only a record the memo holds is followed: one short enough to be looked up, which
        decoded within max_bytes; a write that does not grow it keeps it so."""
        if type(record.stored) is not dict or tuple(flat) not in self._known:
            return  # not a record the memo holds: too long to be looked up, or pushed out
        updated = list(flat)
        names = updated[::2]
        refreshed = record.refreshed
        grown = 0
        try:
            for i in range(0, len(pairs), 2):
                name, value = pairs[i].encode(), pairs[i + 1].encode()
                where = 2 * names.index(name) + 1
                grown += len(value) - len(updated[where])
                updated[where] = value
                if name == _REFRESHED:
                    refreshed = float(value)
        except ValueError:  # a field added (its place is Redis's), or a refresh not a number
            return
        if not 0.0 <= refreshed <= MAX_TIMESTAMP:
            return
        if grown > 0:  # still short enough to be looked up, and within max_bytes?
            length = sum(map(len, updated))
            if length > self.max_length or (self.max_bytes is not None and length > self.max_bytes):
                return
        stored = record.stored.copy()
        stored.update(changed)
        parts: Parts = (stored, record.created, record.expires, refreshed, record.user_id,
                        record.epoch, record.extra, record.unknown)  # fmt: skip
        self._remember(tuple(updated), _record(parts))


_REFRESHED = REFRESHED.encode()
