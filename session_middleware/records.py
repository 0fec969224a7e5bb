"""The session record stored in Redis: JSON only, validated on the way in and out."""

from __future__ import annotations

import json
import marshal
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .keys import UserId, valid_user_id

FORMAT_VERSION = 1
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold
MAX_NESTING = 64
# Before version 3, marshal writes no back-references: equal data gives equal bytes.
MARSHAL_VERSION = 2
_EPOCH_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-")


class CorruptRecord(ValueError):
    """A stored record that is not what this package writes."""


@dataclass(slots=True)
class Record:
    data: dict[str, Any]
    created: float
    expires: float
    refreshed: float
    user_id: UserId | None = None
    epoch: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_json_value(key: object, value: object, max_bytes: int | None = None) -> None:
    """Raise TypeError, naming the key, unless JSON can hold the value faithfully; raise
    SessionTooLarge if the value alone is over `max_bytes` once encoded."""
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__} ({key!r})")
    _check(value, f"session[{key!r}]", 0)
    if max_bytes is not None and isinstance(value, (str, list, tuple, dict)):
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > max_bytes:
            raise SessionTooLarge(f"session[{key!r}] takes", size, max_bytes)


class SessionTooLarge(ValueError):
    """The session's data exceeds max_session_bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} {size} bytes, over the limit of {limit} (max_session_bytes); "
            "keep large data elsewhere and store its id in the session"
        )


def _check(value: object, where: str, depth: int) -> None:
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
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for inner_key, item in value.items():
            if not isinstance(inner_key, str):
                raise TypeError(
                    f"{where}: dict key {inner_key!r} is a {type(inner_key).__name__}; "
                    "JSON object keys must be str"
                )
            _check(item, f"{where}[{inner_key!r}]", depth + 1)
        return
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in the session "
        "(only JSON values: str, int, float, bool, None, list, dict)"
    )


def valid_epoch(epoch: object) -> bool:
    return isinstance(epoch, str) and 0 < len(epoch) <= 64 and set(epoch) <= _EPOCH_CHARS


class Cipher(Protocol):
    """Encryption at rest (see encryption.py): bytes in, ASCII token out, and back."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


def encode_parts(record: Record, cipher: Cipher | None = None) -> tuple[str, str]:
    """The record as JSON split around its epoch: ``head + epoch + tail``.

    Login stamps the epoch inside Redis (a script concatenates it), so the epoch is kept
    out of the JSON encoder: it is always the last member, a plain ASCII string. With a
    cipher, everything else is one encrypted member before it.
    """
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "c": record.created,
        "x": record.expires,
        "r": record.refreshed,
        "u": record.user_id,
        "d": record.data,
    }
    if record.extra:
        body["m"] = record.extra
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if cipher is not None:
        token = cipher.encrypt(text.encode()).decode("ascii")
        text = json.dumps({"v": FORMAT_VERSION, "enc": token}, separators=(",", ":"))
    return text[:-1] + ',"e":"', '"}'


def encode(record: Record, cipher: Cipher | None = None) -> str:
    if record.epoch is not None and not valid_epoch(record.epoch):
        raise ValueError("invalid epoch value")
    head, tail = encode_parts(record, cipher)
    return head + (record.epoch or "") + tail


def decode(raw: bytes | str, cipher: Cipher | None = None) -> Record:
    """The record `raw` holds; CorruptRecord for anything this package could not have
    written."""
    body = _json_object(raw)
    epoch = body.get("e")
    if "enc" in body or cipher is not None:
        body = _decrypted(body, cipher)
    data, user_id, extra = body.get("d"), body.get("u"), body.get("m", {})
    if type(data) is not dict or type(extra) is not dict:
        raise CorruptRecord("data is not an object")
    created, expires = _timestamp(body.get("c")), _timestamp(body.get("x"))
    refreshed = _timestamp(body.get("r"))
    if user_id is not None and not valid_user_id(user_id):
        raise CorruptRecord("bad user id")
    if epoch == "":
        epoch = None
    if (user_id is not None or epoch is not None) and not valid_epoch(epoch):
        raise CorruptRecord("bad epoch")
    return Record(data, created, expires, refreshed, user_id, epoch, extra)


def _json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
        body = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        raise CorruptRecord("not JSON") from error
    if type(body) is not dict or body.get("v") != FORMAT_VERSION:
        raise CorruptRecord("unknown record format")
    return body


def _decrypted(body: dict[str, Any], cipher: Cipher | None) -> dict[str, Any]:
    token = body.get("enc")
    if cipher is None or not isinstance(token, str):
        raise CorruptRecord("encrypted record without a key, or plain record with one")
    try:
        plain = cipher.decrypt(token.encode("ascii"))
    except Exception as error:  # the cipher's own error types: a wrong key or tampering
        raise CorruptRecord("cannot decrypt") from error
    return _json_object(plain)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


# One decoder, built once: json.loads builds a new one for every call given hooks.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _timestamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CorruptRecord("bad timestamps")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise CorruptRecord("a timestamp out of range")
    return float(value)


class RecordReader:
    """Decodes records, remembering the most recently read ones.

    A session read again is usually byte for byte what was read before (it changes on a
    write, or at the refresh interval), so its JSON is parsed and validated once. Every
    read gets a Record of its own, with its own copy of the data (from marshal, fast for
    JSON's types) that a handler may change freely, and the data marshalled as read, to
    tell later whether it was changed in place.
    """

    def __init__(
        self, cipher: Cipher | None, max_entries: int = 512, max_length: int = 2048
    ) -> None:
        self.cipher = cipher
        self.max_entries = max_entries
        self.max_length = max_length  # longer records are decoded every time
        self._known: OrderedDict[str, _Known] = OrderedDict()

    def read(self, raw: str) -> tuple[Record, bytes]:
        """A new Record for `raw` and its data marshalled; CorruptRecord as decode."""
        known = self._known.get(raw)
        if known is None:
            record = decode(raw, self.cipher)
            data = marshal.dumps(record.data, MARSHAL_VERSION)
            if len(raw) <= self.max_length:
                extra = marshal.dumps(record.extra, MARSHAL_VERSION)
                fields = (record.created, record.expires, record.refreshed)
                self._known[raw] = _Known(fields, record.user_id, record.epoch, data, extra)
                if len(self._known) > self.max_entries:
                    self._known.popitem(last=False)
            return record, data
        self._known.move_to_end(raw)
        # Bytes this process marshalled from records it decoded: never read from outside.
        data, extra = marshal.loads(known.data), marshal.loads(known.extra)  # noqa: S302
        created, expires, refreshed = known.times
        record = Record(data, created, expires, refreshed, known.user_id, known.epoch, extra)
        return record, known.data


class _Known(NamedTuple):
    times: tuple[float, float, float]
    user_id: UserId | None
    epoch: str | None
    data: bytes  # marshalled
    extra: bytes  # marshalled
