"""Property-based tests of everything that parses what a client or Redis hands us.

The cookie decoder, the stored-record decoder, and the Cookie header's path through both
drivers are fed arbitrary bytes and near-valid mutations of real cookies and records, on
the real Redis. They must never raise, never authenticate input we did not issue, and
stay within a small multiple of the input's size. Examples are derandomized and bounded,
so a run is the same in CI and here, and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import string
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet, MultiFernet
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions
from session_middleware.cookies import CookieCodec
from session_middleware.records import Cipher, CorruptRecord, Record, decode, encode, valid_epoch

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

    def raw_record(self, cookie: str) -> str:
        return redis_get(record_key(self.config, cookie))

    def session_keys(self) -> list[str]:
        return [key for key in keys_under(self.prefix) if ":s:" in key]


def record_key(config: SessionConfig, cookie: str) -> str:
    tag, session_id, _ = cookie.split(".")
    return config.keys.session_key(tag, session_id)


def redis_get(key: str) -> str:
    """A key's value as text, read with a client of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(key)
    finally:
        client.close()
    assert isinstance(value, bytes), f"nothing at {key}"
    return value.decode()


def redis_set(key: str, value: str | bytes) -> None:
    """Replace a key's value, keeping its TTL."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set(key, value, keepttl=True)
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

finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
json_leaf = st.none() | st.booleans() | finite | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
epoch_like = st.sampled_from(["", "0" * 32, "a b", "é", "x" * 65, "-_"]) | st.text(max_size=8)
record_fields = {
    "v": st.sampled_from([1, 1, 1, 2, "1", None]),
    "c": finite | json_value,
    "x": finite | json_value,
    "r": finite | json_value,
    "u": st.none() | st.text(max_size=8) | st.integers() | json_value,
    "d": st.dictionaries(st.text(max_size=6), json_value, max_size=3) | json_value,
    "m": st.dictionaries(st.text(max_size=3), json_value, max_size=2) | json_value,
    "e": epoch_like | json_value,
    "enc": st.text(max_size=40) | json_value,
}
record_shaped = st.fixed_dictionaries({}, optional=record_fields).map(json.dumps)
OUT_OF_RANGE = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "1e300")
SAFE_VALUES = ("null", "true", "0", "-1", "1.5", '""', '"x"', "[]", "{}", '{"v":1}', "[[[[]]]]")


def cipher_for(encrypted: bool) -> Cipher | None:
    return MultiFernet([Fernet(FERNET_KEY)]) if encrypted else None


def check_decode(raw: bytes | str, cipher: Cipher | None) -> Record | None:
    """decode() either refuses with CorruptRecord or gives a record that is safe to serve:
    any other exception fails the test."""
    try:
        record = decode(raw, cipher)
    except CorruptRecord:
        return None
    assert isinstance(record.data, dict) and isinstance(record.extra, dict)
    if record.user_id is not None:
        assert valid_epoch(record.epoch), "logged in without a valid epoch"
    return record


@fuzz(300)
@given(raw=st.binary(max_size=300) | st.text(max_size=300), encrypted=st.booleans())
@example(raw=b"[" * 100_000, encrypted=False)
@example(raw=b'{"v":1,"d":' * 50_000, encrypted=False)
@example(raw=b"\x80\x04\x95pickle", encrypted=False)
@example(raw="\ud800", encrypted=False)
@example(raw=b'{"v":1,"enc":"\xff"}', encrypted=True)
@example(raw='{"v":1,"enc":"é"}', encrypted=True)
@example(raw=b'{"v":1,"c":0,"x":0,"r":0,"d":{},"u":"a","e":' + b"9" * 5000 + b"}", encrypted=False)
def test_arbitrary_bytes_are_refused_as_corrupt_records(raw: bytes | str, encrypted: bool) -> None:
    assert check_decode(raw, cipher_for(encrypted)) is None


@fuzz(400)
@given(raw=record_shaped, encrypted=st.booleans())
def test_record_shaped_json_is_refused_or_safe(raw: str, encrypted: bool) -> None:
    check_decode(raw, cipher_for(encrypted))


def replace_a_value(draw: st.DrawFn, raw: str, values: Sequence[str]) -> str:
    """Replace one JSON value (after some ':') with one of `values`."""
    colons = [i for i, char in enumerate(raw) if char == ":"]
    if not colons:
        return raw
    start = draw(st.sampled_from(colons)) + 1
    end = start
    while end < len(raw) and raw[end] not in ",}":
        end += 1
    return raw[:start] + draw(st.sampled_from(values)) + raw[end:]


@st.composite
def mutated_record(draw: st.DrawFn, raws: Sequence[str], values: Sequence[str]) -> str:
    raw = draw(st.sampled_from(raws))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            raw = replace_a_value(draw, raw, values)
        else:
            raw = draw(st.sampled_from((_flip, _insert, _delete, _truncate, _duplicate)))(draw, raw)
    return raw


@pytest.fixture
def real_records(issued: Issued) -> dict[bool, list[tuple[str, Record]]]:
    """Records as Redis holds them, plain and encrypted, with what they decode to."""
    plain = [issued.raw_record(c) for c in issued.cookies]
    encrypted_config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=issued.prefix + "enc:",
        encryption_key=FERNET_KEY,
    )
    app = encrypted_config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=bob")
    wsgi_call(app, "/set?key=card&value=4111", f"session={cookie_of(headers)}")
    encrypted = [redis_get(record_key(encrypted_config, cookie_of(headers)))]
    encrypted_config.redis.close()
    return {
        flag: [(raw, decode(raw, cipher_for(flag))) for raw in raws]
        for flag, raws in ((False, plain), (True, encrypted))
    }


@fuzz(300)
@given(data=st.data(), encrypted=st.booleans())
def test_mutated_real_records_are_refused_or_unchanged_in_substance(
    real_records: dict[bool, list[tuple[str, Record]]], data: st.DataObject, encrypted: bool
) -> None:
    originals = real_records[encrypted]
    raw = data.draw(mutated_record([r for r, _ in originals], SAFE_VALUES))
    record = check_decode(raw, cipher_for(encrypted))
    if record is not None and encrypted:
        # Everything but the epoch is inside the ciphertext: it cannot be changed.
        assert (record.data, record.user_id) in [(o.data, o.user_id) for _, o in originals]


@fuzz(200)
@given(data=st.data())
@example(data=None)
def test_decoded_records_hold_only_values_we_could_have_written(
    real_records: dict[bool, list[tuple[str, Record]]], data: st.DataObject | None
) -> None:
    plain = [raw for raw, _ in real_records[False]]
    if data is None:  # the smallest known counterexample, kept so the failure is certain
        raws = [plain[0].replace('"c":', '"c":' + "1" * 400 + ',"old":', 1)]
    else:
        raws = [data.draw(mutated_record(plain, (*OUT_OF_RANGE, '""', '"' + "u" * 300 + '"')))]
    for raw in raws:
        record = check_decode(raw, None)
        if record is None:
            continue
        for stamp in (record.created, record.expires, record.refreshed):
            assert 0 <= stamp < 253402300800, "a timestamp datetime and PXAT can take"
        json.dumps(record.data, allow_nan=False)
        assert record.epoch is None or valid_epoch(record.epoch)
        assert record.user_id is None or 0 < len(str(record.user_id)) <= 256


def test_a_record_we_encode_decodes_to_itself() -> None:
    record = Record(
        data={"a": [1, 2.5, None]},
        created=1.0,
        expires=2.0,
        refreshed=1.5,
        user_id=7,
        epoch="e" * 32,
    )
    for cipher in (None, cipher_for(True)):
        back = decode(encode(record, cipher), cipher)
        assert (back.data, back.user_id, back.epoch, back.expires) == (
            {"a": [1, 2.5, None]},
            7,
            "e" * 32,
            2.0,
        )


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
