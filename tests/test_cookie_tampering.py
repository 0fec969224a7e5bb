"""A cookie we did not issue never opens a session: forged, mangled, re-spelled, signed
with another key, sent twice, oversized or arbitrary bytes, through both drivers; and only
the Cookie header carries one. Property-based cases are derandomized and bounded."""

from __future__ import annotations

import asyncio
import itertools
import tracemalloc
from collections.abc import Callable, Iterator, Sequence

import itsdangerous
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions

from .support import OTHER_SECRET, REDIS_URL, SECRET
from .support.apps import asgi_app, wsgi_app
from .support.http import asgi_call, cookie_of, logged_in_cookie, read_with, wsgi_call
from .support.tampering import (
    B64,
    Issued,
    delete_chars,
    duplicate_part,
    flip_char,
    fuzz,
    insert_noise,
    issued,
    noise_char,
    position_in,
    truncate,
)

__all__ = ["issued"]  # the fixture

pytestmark = pytest.mark.anyio

FORGED = "session=" + "a" * 24 + "." + "b" * 43 + "." + "A" * 43


@pytest.fixture
def loop(issued: Issued) -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every example of a test (a redis.asyncio pool is per loop)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(issued.config.redis.aclose())
    loop.close()


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every HMAC verification itsdangerous makes, recorded (it still makes them)."""
    checked: list[bytes] = []
    verify = itsdangerous.Signer.verify_signature

    def counted(self: itsdangerous.Signer, value: bytes, sig: bytes) -> bool:
        checked.append(value)
        return verify(self, value, sig)

    monkeypatch.setattr(itsdangerous.Signer, "verify_signature", counted)
    return checked


SWEEP = (1, 2, 100, 4096, 65_536, 1_000_000)


Mutation = Callable[[st.DrawFn, str], str]


def _swap_case(draw: st.DrawFn, value: str) -> str:
    i = position_in(draw, value)
    return value[:i] + value[i : i + 1].swapcase() + value[i + 1 :]


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
    flip_char,
    _swap_case,
    insert_noise,
    delete_chars,
    truncate,
    duplicate_part,
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


def test_each_cookie_has_exactly_one_accepted_spelling(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    cookie = cookie_of(wsgi_call(config(wsgi_app), "/login?user=alice")[1])
    accepted = [c for c in B64 if config.core.codec.decode(cookie[:-1] + c) is not None]
    assert accepted == [cookie[-1]]
    config.redis.close()


def test_a_huge_header_costs_few_signature_checks_and_little_memory(
    key_prefix: str, signature_checks: list[bytes]
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    codec = config.core.codec
    cookie = cookie_of(wsgi_call(config(wsgi_app), "/login?user=alice")[1])
    assert codec.find(f"{FORGED}; {FORGED}; session={cookie}") is not None
    signature_checks.clear()
    forged, empty = "; ".join([FORGED] * 7700), ";" * 1_000_000 + "session=x"
    tracemalloc.start()
    try:
        assert codec.find(forged) is None
        assert codec.find(empty) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(signature_checks) <= 8
    assert peak <= 64 * 1024, f"{peak} bytes"
    config.redis.close()


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(
            lambda c: c[:-6] + ("A" if c[-6] != "A" else "B") + c[-5:], id="tampered-signature"
        ),
        pytest.param(lambda c: c[: len(c) // 2], id="truncated"),
        pytest.param(lambda c: c + "x" * 5000, id="oversized"),
        pytest.param(lambda c: "é" + c[1:], id="non-ascii"),
        pytest.param(lambda c: c.replace(".", "", 1), id="malformed"),
        pytest.param(lambda c: "", id="empty"),
        pytest.param(lambda c: "0" * 24 + c[24:], id="tag-swapped"),
    ],
)
async def test_a_bad_cookie_gives_an_empty_anonymous_session(config: SessionConfig, mangle) -> None:
    cookie = await logged_in_cookie(config)
    response = await read_with(config, f"session={mangle(cookie)}")
    assert response.status_code == 200
    assert response.json() == {"user": None, "rejected": None, "data": {}}
    assert "set-cookie" not in response.headers


async def test_a_cookie_signed_with_another_key_is_not_adopted(key_prefix: str) -> None:
    foreign = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    ours = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    cookie = await logged_in_cookie(foreign)
    assert (await read_with(ours, f"session={cookie}")).json()["user"] is None


async def test_duplicated_cookies_use_the_first_valid_one(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    header = f"session=garbage; other=1; session={cookie}; session=more-garbage"
    assert (await read_with(config, header)).json()["user"] == "alice"


def test_only_the_cookie_header_carries_a_session(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    assert wsgi_call(app, f"/read?session={cookie}")[2]["user"] is None
    assert wsgi_call(app, "/read", f"other={cookie}; xsession={cookie}")[2]["user"] is None
    assert wsgi_call(app, "/read", f"session={cookie}")[2]["user"] == "alice"
    config.redis.close()
