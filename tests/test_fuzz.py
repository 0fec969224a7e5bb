"""Property-based tests of everything that parses what a client or Redis hands us.

The cookie decoder, the stored-record decoder, and the Cookie header's path through both
drivers are fed arbitrary bytes and near-valid mutations of real cookies; the record
decoder and the middleware are fed arbitrary hashes (any field names and values, missing
or garbled metadata, bad JSON, huge or deeply nested values) and real records mutated
field by field, planted in the real Redis, as are keys of the wrong type. They must never
raise (never a 500), never authenticate input we did not issue, serve a record only if we
could have written it, and delete and log (without secrets) any other. Examples are
derandomized and bounded, so a run is the same in CI and here, and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import string
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet, MultiFernet
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions
from session_middleware._cookies import CookieCodec
from session_middleware._records import (
    MAX_TIMESTAMP,
    Cipher,
    CorruptRecord,
    FieldCodec,
    Record,
    check_json_value,
    decode,
    fields_size,
    flat_fields,
    to_json,
    valid_epoch,
)
from session_middleware._redis.key_layout import valid_user_id

from .apps import asgi_app, wsgi_app
from .support import REDIS_URL, SECRET, keys_under

B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
NOISE = B64 + '.;=", \t\\\x00\x7f\xe9\xff'
FERNET_KEY = Fernet.generate_key()
SWEEP = (1, 2, 100, 4096, 65_536, 1_000_000)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- real cookies and records, issued through the middleware -----------------------------


@dataclass
class Issued:
    """Sessions made by the WSGI app on this test's key prefix: one logged in, one not."""

    config: SessionConfig
    alice: str
    anonymous: str
    prefix: str

    @property
    def cookies(self) -> tuple[str, str]:
        return (self.alice, self.anonymous)

    @property
    def codec(self) -> CookieCodec:
        return self.config.core.codec

    def record_fields(self, cookie: str) -> dict[str, str]:
        return redis_hash(record_key(self.config, cookie))

    def session_keys(self) -> list[str]:
        return [key for key in keys_under(self.prefix) if ":s:" in key]


def record_key(config: SessionConfig, cookie: str) -> str:
    tag, session_id, _ = cookie.split(".")
    return config.keys.session_key(tag, session_id)


def redis_get(key: str) -> str:
    """A string key's value as text (an epoch), read with a client of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(key)
    finally:
        client.close()
    assert isinstance(value, bytes), f"nothing at {key}"
    return value.decode()


def redis_hash(key: str) -> dict[str, str]:
    """A session record's fields as text, read with a client of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        fields = client.hgetall(key)
    finally:
        client.close()
    assert fields, f"no record at {key}"
    return {name.decode(): value.decode() for name, value in fields.items()}


Planted = Mapping[str | bytes, str | bytes] | str | bytes | list[bytes]


def redis_plant(key: str, value: Planted) -> None:
    """Replace whatever is at a key, keeping its TTL: a mapping is planted as a hash (as
    records are), a string as a string key, a list as a list key."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl = client.pttl(key)
        with client.pipeline() as pipe:
            pipe.delete(key)
            if isinstance(value, Mapping):
                if value:
                    pipe.hset(key, mapping=dict(value))
            elif isinstance(value, list):
                pipe.rpush(key, *value)
            else:
                pipe.set(key, value)
            if ttl > 0:
                pipe.pexpire(key, ttl)
            pipe.execute()
    finally:
        client.close()


def redis_edit(key: str, changes: Mapping[str, str | bytes], removed: Sequence[str] = ()) -> None:
    """HSET (and HDEL) some fields of a record in place."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        if changes:
            client.hset(key, mapping=dict(changes))
        if removed:
            client.hdel(key, *removed)
    finally:
        client.close()


def redis_exists(key: str) -> bool:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return bool(client.exists(key))
    finally:
        client.close()


def wsgi_call(app: Any, target: str, cookie: str | None = None) -> tuple[str, dict[str, str], Any]:
    """One request through a WSGI app, in-process; returns status, headers, parsed body."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started[-1]
    return status, {name.lower(): value for name, value in headers}, parsed(body)


async def asgi_call(
    app: Any, target: str, cookie_headers: Sequence[bytes]
) -> tuple[int, dict[str, str], Any]:
    """One request through an ASGI app, in-process, with these raw Cookie header values."""
    path, _, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"t"), *((b"cookie", value) for value in cookie_headers)],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *rest = sent
    headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in start["headers"]}
    return start["status"], headers, parsed(b"".join(m.get("body", b"") for m in rest))


def parsed(body: bytes) -> Any:
    """The test apps answer JSON; the middleware's own 503 is plain text."""
    return json.loads(body) if body.startswith(b"{") else body.decode()


def cookie_of(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";")[0].split("=", 1)[1]


@pytest.fixture
def issued(key_prefix: str) -> Iterator[Issued]:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=alice")
    alice = cookie_of(headers)
    wsgi_call(app, "/set?key=theme&value=dark", f"session={alice}")
    _, headers, _ = wsgi_call(app, "/set?key=cart&value=3")
    yield Issued(config, alice, cookie_of(headers), key_prefix)
    config.redis.close()


@pytest.fixture
def loop(issued: Issued) -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every example of a test (a redis.asyncio pool is per loop)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(issued.config.redis.aclose())
    loop.close()


# -- strategies ---------------------------------------------------------------------------

noise_char = st.sampled_from(NOISE) | st.characters(codec="latin-1")
Mutation = Callable[[st.DrawFn, str], str]


def _position(draw: st.DrawFn, value: str) -> int:
    return draw(st.integers(0, max(len(value) - 1, 0)))


def _flip(draw: st.DrawFn, value: str) -> str:
    i = _position(draw, value)
    return value[:i] + draw(noise_char) + value[i + 1 :]


def _swap_case(draw: st.DrawFn, value: str) -> str:
    i = _position(draw, value)
    return value[:i] + value[i : i + 1].swapcase() + value[i + 1 :]


def _insert(draw: st.DrawFn, value: str) -> str:
    i = draw(st.integers(0, len(value)))
    return value[:i] + draw(st.text(noise_char, min_size=1, max_size=3)) + value[i:]


def _delete(draw: st.DrawFn, value: str) -> str:
    i = _position(draw, value)
    return value[:i] + value[i + draw(st.integers(1, 4)) :]


def _truncate(draw: st.DrawFn, value: str) -> str:
    return value[: draw(st.integers(0, len(value)))]


def _duplicate(draw: st.DrawFn, value: str) -> str:
    return value + draw(st.sampled_from(["", ".", " ", '"', "\t"])) + value


def _retag(draw: st.DrawFn, value: str) -> str:
    tag = draw(st.text("0123456789abcdef", min_size=24, max_size=24))
    return tag + value[24:]


def _last_char(draw: st.DrawFn, value: str) -> str:
    return value[:-1] + draw(st.sampled_from(B64))


def _reorder(draw: st.DrawFn, value: str) -> str:
    return ".".join(draw(st.permutations(value.split("."))))


def _wrap(draw: st.DrawFn, value: str) -> str:
    before, after = draw(
        st.sampled_from(
            [('"', '"'), (" ", " "), ("\t", ""), ('""', '""'), ("", '"'), ('"', ""), ("", "\x00")]
        )
    )
    return before + value + after


def _huge(draw: st.DrawFn, value: str) -> str:
    filler = draw(st.sampled_from(["A", "a.", "=", ";", " ", "\xff"])) * draw(
        st.sampled_from(SWEEP)
    )
    return filler + value if draw(st.booleans()) else value + filler


MUTATIONS: tuple[Mutation, ...] = (
    _flip,
    _swap_case,
    _insert,
    _delete,
    _truncate,
    _duplicate,
    _retag,
    _last_char,
    _reorder,
    _wrap,
    _huge,
)


@st.composite
def near_valid(draw: st.DrawFn, cookies: Sequence[str]) -> str:
    """A real cookie, perhaps spliced with another, then mutated one to three times."""
    value = draw(st.sampled_from(cookies))
    if draw(st.booleans()):
        other = draw(st.sampled_from(cookies)).split(".")
        parts = value.split(".")
        part = draw(st.integers(0, 2))
        value = ".".join([*parts[:part], other[part], *parts[part + 1 :]])
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        value = mutate(draw, value)
    return value


@st.composite
def cookie_header(draw: st.DrawFn, name: str, cookies: Sequence[str]) -> str:
    """A Cookie header mixing near-valid session cookies, other cookies and junk."""
    pair = st.one_of(
        near_valid(cookies).map(lambda v: f"{name}={v}"),
        st.sampled_from(cookies).map(lambda v: f"{name}={v}"),
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(["other", name + "x", " " + name, name.upper(), ""]),
            st.text(noise_char, max_size=20),
        ),
        st.text(noise_char, max_size=30),
    )
    pairs = draw(st.lists(pair, min_size=1, max_size=5))
    return draw(st.sampled_from(["; ", ";", " ; ", ";;", ", "])).join(pairs)


def issued_in(text: str, cookie: str) -> bool:
    return cookie in text


# -- the cookie decoder -------------------------------------------------------------------


@fuzz(300)
@given(header=st.text() | st.binary().map(lambda b: b.decode("latin-1")))
@example(header="session=")
@example(header="session=" + "a" * 24 + "." + "b" * 43 + "." + "A" * 43)
@example(header=";" * 100_000 + "session=x")
def test_arbitrary_headers_find_no_session(issued: Issued, header: str) -> None:
    assert issued.codec.find(header) is None
    assert issued.codec.find(f"session={header}") is None
    assert issued.codec.decode(header) is None


@fuzz(500)
@given(data=st.data())
def test_near_valid_cookies_never_yield_another_session(
    issued: Issued, data: st.DataObject
) -> None:
    codec = issued.codec
    refs = {cookie: codec.decode(cookie) for cookie in issued.cookies}
    assert None not in refs.values()
    value = data.draw(near_valid(issued.cookies))
    ref = codec.decode(value)
    if ref is not None:
        assert value in refs, "only a cookie we issued, spelled as we issued it"
    header = data.draw(cookie_header("session", issued.cookies))
    found = codec.find(header)
    if found is not None:
        (cookie,) = [c for c, r in refs.items() if r == found]
        assert issued_in(header, cookie)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(
            "; ".join(["session=" + "a" * 24 + "." + "b" * 43 + "." + "A" * 43] * 7700),
            id="forged-pairs",
        ),
        pytest.param("session=" + "x" * 1_000_000, id="one-long-value"),
        pytest.param("session=" + '"' * 1_000_000, id="quotes"),
        pytest.param(";" * 1_000_000 + "session=x", id="empty-pairs"),
        pytest.param("session=;" * 111_111, id="empty-values"),
    ],
)
def test_a_one_megabyte_header_is_refused_in_bounded_memory(issued: Issued, header: str) -> None:
    tracemalloc.start()
    try:
        found = issued.codec.find(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found is None
    assert peak <= 64 * 1024, f"{peak} bytes for a {len(header)}-byte header"


# -- the stored-record decoder ------------------------------------------------------------
#
# A record is a HASH (_records.py): metadata fields c, x, r, u, e, m and one d:<key> field
# per session key. Redis hands decode() its HGETALL as flat field/value pairs of bytes.

finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
json_leaf = st.none() | st.booleans() | finite | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
OUT_OF_RANGE = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "1e300")
SAFE_VALUES = ("null", "true", "0", "-1", "1.5", '""', '"x"', "[]", "{}", '{"v":1}', "[[[[]]]]")
garbled = st.text(max_size=12) | st.sampled_from(
    ("", " ", "{", '"', "[" * 70, "\x00", "é", "\\u00e9", '"\\u00e9"', "gAAAAA", "1_0")
)
json_text = json_value.map(json.dumps)
timestamp_text = (
    finite.map(repr) | finite.map(str) | st.sampled_from(OUT_OF_RANGE) | json_text | garbled
)
epoch_like = st.sampled_from(["", "0" * 32, "a b", "é", "x" * 65, "-_"]) | st.text(max_size=8)
meta_fields = {
    "c": timestamp_text,
    "x": timestamp_text,
    "r": timestamp_text,
    "u": st.text(max_size=8).map(json.dumps) | st.integers().map(str) | json_text | garbled,
    "e": epoch_like | json_text,
    "m": st.dictionaries(st.text(max_size=3), json_value, max_size=2).map(json.dumps)
    | json_text
    | garbled,
}
data_fields = st.dictionaries(
    st.text(max_size=6).map(lambda key: "d:" + key), json_text | garbled, max_size=3
)
unknown_fields = st.dictionaries(
    st.text(max_size=3).filter(lambda name: name not in meta_fields and not name.startswith("d:")),
    garbled,
    max_size=1,
)
record_shaped = st.builds(
    lambda meta, data, unknown, odd: {**meta, **data, **(unknown if odd else {})},
    st.fixed_dictionaries({}, optional=meta_fields),
    data_fields,
    unknown_fields,
    st.integers(0, 3).map(lambda n: n == 0),
)


def cipher_for(encrypted: bool) -> Cipher | None:
    return MultiFernet([Fernet(FERNET_KEY)]) if encrypted else None


def flat(fields: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[bytes]:
    """A hash as HGETALL returns it from a script: flat field/value pairs of bytes (lone
    surrogates become the invalid UTF-8 a byte string may hold)."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    return [item.encode("utf-8", "surrogatepass") for pair in pairs for item in pair]


def sealed(fields: Mapping[str, str], cipher: Cipher | None) -> dict[str, str]:
    """The hash with its user id, device info and values encrypted, as a cipher stores them."""
    codec = FieldCodec(cipher)
    return {
        name: codec.seal(value, name) if name in ("u", "m") or name.startswith("d:") else value
        for name, value in fields.items()
    }


def check_decode(
    fields: Sequence[Any], cipher: Cipher | None, max_bytes: int | None = None
) -> Record | None:
    """decode() either refuses with CorruptRecord or gives a record this package could have
    written, safe to serve: any other exception fails the test."""
    try:
        record, _deep = decode(fields, FieldCodec(cipher), max_bytes)
    except CorruptRecord:
        return None
    assert isinstance(record.data, dict) and isinstance(record.extra, dict)
    for stamp in (record.created, record.expires, record.refreshed):
        assert 0 <= stamp <= MAX_TIMESTAMP, "a timestamp datetime and PXAT can take"
    assert record.epoch is None or valid_epoch(record.epoch)
    if record.user_id is not None:
        assert valid_user_id(record.user_id)
        assert valid_epoch(record.epoch), "logged in without a valid epoch"
    for key, value in record.data.items():
        check_json_value(key, value)  # finite numbers, nesting within MAX_NESTING
    # Written back, it encodes (no lone surrogates) within the limit it was read under.
    size = fields_size(FieldCodec(None).fields(record))
    if max_bytes is not None:
        assert size <= max_bytes, "a record a write would refuse as too large"
    return record


@fuzz(300)
@given(
    fields=st.lists(st.binary(max_size=40) | st.text(max_size=40), max_size=12),
    encrypted=st.booleans(),
)
@example(fields=[b"d:k", b"[" * 100_000], encrypted=False)
@example(fields=[b"d:k", b'{"v":1,"d":' * 50_000], encrypted=False)
@example(fields=[b"\x80\x04\x95pickle"], encrypted=False)
@example(fields=["\ud800", "x"], encrypted=False)
@example(fields=[b"d:\xff", b"1"], encrypted=False)
@example(fields=[b"u", b"\xff"], encrypted=True)
@example(fields=["d:k", "é"], encrypted=True)
@example(
    fields=[b"c", b"0", b"x", b"0", b"r", b"0", b"u", b'"a"', b"e", b"9" * 5000], encrypted=False
)
@example(fields=[b"c", b"0", b"x", b"0", b"r"], encrypted=False)
@example(fields=[1, 2, None, [b"c"]], encrypted=False)  # type: ignore[list-item]
def test_arbitrary_hashes_are_refused_as_corrupt_records(
    fields: list[bytes | str], encrypted: bool
) -> None:
    record = check_decode(fields, cipher_for(encrypted))
    if record is not None:
        names = {name.decode() if isinstance(name, bytes) else name for name in fields[::2]}
        assert {"c", "x", "r"} <= names, "only a hash carrying all three timestamps"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"WRONGTYPE", id="not-a-hash"),
        pytest.param("WRONGTYPE", id="not-a-hash-text"),
        pytest.param(None, id="nil"),
        pytest.param(3, id="integer"),
    ],
)
def test_a_reply_that_is_not_a_hash_is_refused(reply: Any) -> None:
    with pytest.raises(CorruptRecord):
        flat_fields(reply)


@fuzz(400)
@given(fields=record_shaped, encrypted=st.booleans(), seal=st.booleans())
@example(
    fields={"c": "0", "x": "1", "r": "0", "d:s": "[" * 65 + "]" * 65}, encrypted=True, seal=True
)
@example(fields={"c": "0", "x": "1", "r": "0", "u": '"a"', "e": "a b"}, encrypted=False, seal=False)
@example(fields={"c": "0", "x": "1", "r": "0", "u": "true", "e": "e"}, encrypted=False, seal=False)
@example(fields={"c": "0", "x": "1", "r": "0", "m": "[]"}, encrypted=True, seal=True)
@example(fields={"c": "-0.5", "x": "1", "r": "0"}, encrypted=False, seal=False)
def test_record_shaped_hashes_are_refused_or_safe(
    fields: dict[str, str], encrypted: bool, seal: bool
) -> None:
    cipher = cipher_for(encrypted)
    check_decode(flat(sealed(fields, cipher) if seal else fields), cipher)


@fuzz(200)
@given(fields=record_shaped, limit=st.integers(0, 400))
def test_a_record_over_max_bytes_is_refused(fields: dict[str, str], limit: int) -> None:
    pairs = flat(fields)
    record = check_decode(pairs, None, limit)
    if record is not None:
        assert sum(len(item) for item in pairs) <= limit


# Mutations of a stored hash: what an attacker with write access to Redis (or a bug, or a
# half-applied migration) could leave at a session's key.


def _set_value(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    fields[draw(st.sampled_from(sorted(fields)))] = draw(st.sampled_from(values))


def _mangle_value(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(sorted(fields)))
    mutate = draw(st.sampled_from((_flip, _insert, _delete, _truncate, _duplicate)))
    fields[name] = mutate(draw, fields[name])


def _drop_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    del fields[draw(st.sampled_from(sorted(fields)))]


def _rename_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(sorted(fields)))
    new = draw(st.sampled_from(["c", "x", "r", "u", "e", "m", "d:", "d:u", "d:e", "o", "D:k"]))
    fields[new] = fields.pop(name)


def _swap_values(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    one, two = draw(st.sampled_from(sorted(fields))), draw(st.sampled_from(sorted(fields)))
    fields[one], fields[two] = fields[two], fields[one]


def _add_field(draw: st.DrawFn, fields: dict[str, str], values: Sequence[str]) -> None:
    name = draw(st.sampled_from(["d:new", "d:", "o", "v", "enc", "d:" + "k" * 300]))
    fields[name] = draw(st.sampled_from(values))


HASH_MUTATIONS = (_set_value, _mangle_value, _drop_field, _rename_field, _swap_values, _add_field)


@st.composite
def mutated_record(
    draw: st.DrawFn, originals: Sequence[dict[str, str]], values: Sequence[str]
) -> dict[str, str]:
    """A real record's hash, perhaps mixed with another's, mutated one to three times."""
    fields = dict(draw(st.sampled_from(originals)))
    if len(originals) > 1 and draw(st.booleans()):
        other = draw(st.sampled_from(originals))
        name = draw(st.sampled_from(sorted(other)))
        fields[name] = other[name]
    for _ in range(draw(st.integers(1, 3))):
        if fields:
            draw(st.sampled_from(HASH_MUTATIONS))(draw, fields, values)
    return fields


@pytest.fixture
def real_records(issued: Issued) -> dict[bool, list[tuple[dict[str, str], Record]]]:
    """Records as Redis holds them, plain and encrypted, with what they decode to."""
    plain = [issued.record_fields(c) for c in issued.cookies]
    encrypted_config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=issued.prefix + "enc:",
        encryption_key=FERNET_KEY,
    )
    app = encrypted_config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=bob")
    bob = cookie_of(headers)
    wsgi_call(app, "/set?key=card&value=4111", f"session={bob}")
    wsgi_call(app, "/set?key=role&value=user", f"session={bob}")
    _, headers, _ = wsgi_call(app, "/set?key=cart&value=3")
    encrypted = [redis_hash(record_key(encrypted_config, c)) for c in (bob, cookie_of(headers))]
    encrypted_config.redis.close()
    assert all("d:card" not in fields or "4111" not in fields["d:card"] for fields in encrypted)
    return {
        flag: [(fields, decode(flat(fields), FieldCodec(cipher_for(flag)))[0]) for fields in raws]
        for flag, raws in ((False, plain), (True, encrypted))
    }


@fuzz(300)
@given(data=st.data(), encrypted=st.booleans())
def test_mutated_real_records_are_refused_or_unchanged_in_substance(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]],
    data: st.DataObject,
    encrypted: bool,
) -> None:
    originals = real_records[encrypted]
    fields = data.draw(mutated_record([f for f, _ in originals], SAFE_VALUES))
    record = check_decode(flat(fields), cipher_for(encrypted))
    if record is not None and encrypted:
        # The user id, the device info and every value are Fernet tokens: none can be
        # forged or altered. (That one can be moved to another field is pinned, failing,
        # by test_an_encrypted_value_cannot_be_moved_to_another_field.)
        sealed_texts = {text for fields, _ in originals for text in opened(fields)}
        assert record.user_id is None or to_json(record.user_id) in sealed_texts
        assert record.extra == {} or to_json(record.extra) in sealed_texts
        assert set(record.stored.values()) <= sealed_texts


def opened(fields: Mapping[str, str]) -> list[str]:
    """The plaintext of every encrypted field of a record."""
    codec = FieldCodec(cipher_for(True))
    return [
        codec.open(value, name)
        for name, value in fields.items()
        if name in ("u", "m") or name.startswith("d:")
    ]


@pytest.mark.parametrize(
    ("source", "target"),
    [("d:card", "d:role"), ("d:card", "d:is_admin"), ("d:card", "u"), ("m", "d:card")],
)
def test_an_encrypted_value_cannot_be_moved_to_another_field(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]], source: str, target: str
) -> None:
    """docs/security.md: an encrypted record's data and user cannot be changed. Without the
    encryption key, a token moved to another field must not decrypt as that field's value."""
    fields = dict(real_records[True][0][0])
    fields[target] = fields.pop(source)
    assert check_decode(flat(fields), cipher_for(True)) is None


@fuzz(200)
@given(data=st.data())
@example(data=None)
def test_decoded_records_hold_only_values_we_could_have_written(
    real_records: dict[bool, list[tuple[dict[str, str], Record]]], data: st.DataObject | None
) -> None:
    plain = [fields for fields, _ in real_records[False]]
    if data is None:  # the smallest known counterexamples, kept so the failure is certain
        cases = [
            {**plain[0], "c": "1" * 400},
            {**plain[0], "d:s": '"\\ud800"'},
            {**plain[0], "d:s": "[" * 65 + "]" * 65},
            {**plain[0], "u": '"' + "u" * 300 + '"'},
        ]
    else:
        values = (*OUT_OF_RANGE, '""', '"' + "u" * 300 + '"', "[" * 65 + "]" * 65, '"\\ud800"')
        cases = [data.draw(mutated_record(plain, values))]
    for fields in cases:
        record = check_decode(flat(fields), None)
        if record is not None:
            json.dumps(record.data, allow_nan=False)


def test_a_record_we_encode_decodes_to_itself() -> None:
    record = Record(
        data={"a": [1, 2.5, None], "b": {"c": "é"}, "": 2**60},
        created=1.0,
        expires=2.0,
        refreshed=1.5,
        user_id=7,
        epoch="e" * 32,
        extra={"ua": "a browser", "ip": None},
    )
    for cipher in (None, cipher_for(True)):
        pairs = FieldCodec(cipher).fields(record)
        back, deep = decode(
            flat(list(zip(pairs[::2], pairs[1::2], strict=True))), FieldCodec(cipher)
        )
        assert not deep
        assert (back.data, back.user_id, back.epoch, back.extra) == (
            record.data,
            7,
            "e" * 32,
            record.extra,
        )
        assert (back.created, back.expires, back.refreshed) == (1.0, 2.0, 1.5)
        if cipher is not None:
            assert not any("é" in value or "browser" in value for value in pairs)


# -- planted records through the middleware ----------------------------------------------

DROPPED = "dropped a session record"


def dropped_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("session_middleware") and DROPPED in r.getMessage()
    ]


@pytest.fixture
def plain_records(issued: Issued) -> list[dict[str, str]]:
    return [issued.record_fields(c) for c in issued.cookies]


def serve_planted(
    issued: Issued, caplog: pytest.LogCaptureFixture, cookie: str, fields: Mapping[str, str]
) -> Record | None:
    """Plant `fields` (and a secret value) as the record at `cookie`'s key, then request
    through the WSGI middleware: a 200, and either the session decode() accepts or a fresh
    one, the planted record deleted and logged without its contents or the cookie."""
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="session_middleware")
    marker = f"planted-{uuid.uuid4().hex}"
    fields = {**fields, "d:secret": json.dumps(marker)}
    key = record_key(issued.config, cookie)
    redis_plant(key, dict(zip(*[iter(flat(fields))] * 2, strict=True)))
    try:
        expected: Record | None = decode(
            flat(fields), FieldCodec(None), issued.config.core.max_bytes
        )[0]
    except CorruptRecord:
        expected = None
    status, _, body = wsgi_call(issued.config(wsgi_app), "/set?key=k&value=v", f"session={cookie}")
    assert status == "200 OK"
    if expected is not None:
        check_decode(flat(fields), None, issued.config.core.max_bytes)
    assert body["user"] in (None, "alice")
    lines = dropped_lines(caplog)
    if expected is None:
        assert body["user"] is None and body["data"] == {"k": "v"}
        assert not redis_exists(key), "a record we could not have written is deleted"
        assert len(lines) == 1 and re.search(r": key [0-9a-f]{12}$", lines[0])
    for text in lines:
        assert marker not in text and cookie.split(".")[1] not in text
    return expected


@fuzz(120)
@given(data=st.data())
def test_planted_hashes_are_served_only_as_written_else_deleted_and_logged(
    issued: Issued,
    plain_records: list[dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    cookie = data.draw(st.sampled_from(issued.cookies))
    values = (*SAFE_VALUES, *OUT_OF_RANGE)
    fields = data.draw(mutated_record(plain_records, values) | record_shaped)
    serve_planted(issued, caplog, cookie, fields)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('"\\ud800"', id="lone-surrogate-escape"),
        pytest.param('"' + "é" * 40_000 + '"', id="under-the-limit-in-characters-not-bytes"),
        pytest.param("[" * 65 + "]" * 65, id="nested-65"),
        pytest.param("1e999", id="infinity"),
    ],
)
def test_planted_values_known_to_be_hard(
    issued: Issued,
    plain_records: list[dict[str, str]],
    caplog: pytest.LogCaptureFixture,
    value: str,
) -> None:
    serve_planted(issued, caplog, issued.alice, {**plain_records[0], "d:s": value})


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param(b"a string", id="string"),
        pytest.param(b'{"v":1,"c":0,"x":9e9,"r":0,"d":{}}', id="old-json-layout"),
        pytest.param([b"c", b"0"], id="list"),
    ],
)
def test_a_key_of_the_wrong_type_is_deleted_and_logged(
    issued: Issued, caplog: pytest.LogCaptureFixture, planted: Planted
) -> None:
    caplog.set_level(logging.WARNING, logger="session_middleware")
    key = record_key(issued.config, issued.alice)
    redis_plant(key, planted)
    status, _, body = wsgi_call(issued.config(wsgi_app), "/read", f"session={issued.alice}")
    assert status == "200 OK" and (body["user"], body["data"]) == (None, {})
    assert not redis_exists(key)
    (line,) = dropped_lines(caplog)
    assert re.search(r": key [0-9a-f]{12}$", line)


# -- the Cookie header through the middleware ---------------------------------------------


def header_values(
    draw: Callable[[st.SearchStrategy[list[int]]], list[int]], header: str
) -> list[bytes]:
    """The header as one to three Cookie header fields (HTTP/2 sends one per cookie)."""
    raw = header.encode("latin-1")
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=2)))
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def expected_user(issued: Issued, header: str, user: object) -> None:
    if user is not None:
        assert user == "alice" and issued_in(header, issued.alice)


@fuzz(150)
@given(
    fields=st.lists(st.binary(max_size=200), min_size=1, max_size=3),
    target=st.sampled_from(["/read", "/set?key=k&value=v"]),
)
@example(fields=[b"session=\xff\xfe\x00;session=\x80"], target="/read")
@example(fields=[b"session=" + b"A" * 1_000_000], target="/set?key=k&value=v")
def test_asgi_survives_arbitrary_cookie_bytes(
    issued: Issued, loop: asyncio.AbstractEventLoop, fields: list[bytes], target: str
) -> None:
    app = issued.config(asgi_app)
    status, headers, body = loop.run_until_complete(asgi_call(app, target, fields))
    assert status == 200
    assert body["user"] is None and body["rejected"] is None
    assert body["data"] == ({} if target == "/read" else {"k": "v"})
    assert ("set-cookie" in headers) == (target != "/read")


def test_asgi_authenticates_only_cookies_we_issued(
    issued: Issued, loop: asyncio.AbstractEventLoop
) -> None:
    before = issued.session_keys()
    app = issued.config(asgi_app)

    @fuzz(250)
    @given(data=st.data())
    def request(data: st.DataObject) -> None:
        header = data.draw(cookie_header("session", issued.cookies))
        fields = header_values(data.draw, header)
        status, headers, body = loop.run_until_complete(asgi_call(app, "/read", fields))
        assert status == 200
        expected_user(issued, "; ".join(f.decode("latin-1") for f in fields), body["user"])
        assert body["data"] in ({}, {"theme": "dark"}, {"cart": "3"})
        assert "set-cookie" not in headers, "no cookie we issued is stale, none is adopted"

    request()
    assert issued.session_keys() == before, "no session was created or deleted"


def test_wsgi_authenticates_only_cookies_we_issued(issued: Issued) -> None:
    before = issued.session_keys()
    app = issued.config(wsgi_app)

    @fuzz(250)
    @given(data=st.data())
    @example(data=None)
    def request(data: st.DataObject | None) -> None:
        if data is None:
            header = f"session=\xff\x00; session={issued.alice}"
        else:
            raw = data.draw(st.binary(max_size=100)) if data.draw(st.booleans()) else b""
            header = raw.decode("latin-1") + data.draw(cookie_header("session", issued.cookies))
        status, headers, body = wsgi_call(app, "/read", header)
        assert status == "200 OK"
        expected_user(issued, header, body["user"])
        assert body["data"] in ({}, {"theme": "dark"}, {"cart": "3"})
        assert "set-cookie" not in headers
        if data is None:
            assert body["user"] == "alice"

    request()
    assert issued.session_keys() == before, "no session was created or deleted"
