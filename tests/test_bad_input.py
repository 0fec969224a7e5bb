"""Every row of the design's "when things go wrong" table, against the real Redis."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import redis

from session_middleware import ConfigurationError, SessionConfig, StoreUnavailable, sessions
from session_middleware._cookies import CookieRef
from session_middleware._core.lifecycle import Opened

from .apps import asgi_app, wsgi_app
from .support import OTHER_SECRET, REDIS_URL, SECRET, keys_under

pytestmark = pytest.mark.anyio
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


def asgi_client(config: SessionConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=config(asgi_app)), base_url="http://testserver"
    )


def wsgi_client(config: SessionConfig) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=config(wsgi_app)), base_url="http://testserver"
    )


async def logged_in_cookie(config: SessionConfig, user: str = "alice") -> str:
    async with asgi_client(config) as client:
        response = await client.get(f"/login?user={user}")
    return response.cookies["session"]


async def read_with(config: SessionConfig, cookie_header: str) -> httpx.Response:
    async with asgi_client(config) as client:
        return await client.get("/read", headers={"cookie": cookie_header.encode("utf-8")})


def session_keys(prefix: str) -> list[str]:
    return [k for k in keys_under(prefix) if ":s:" in k]


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


async def test_an_unknown_session_id_is_cleared_and_never_adopted(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    async with asgi_client(config) as client:
        response = await client.get("/set?key=a&value=1", headers={"cookie": f"session={cookie}"})
    assert response.json()["user"] is None
    new_cookie = response.headers["set-cookie"]
    assert cookie not in new_cookie, "a fresh id is issued, the stale one is not reused"
    assert len(session_keys(config.keys.prefix)) == 1


async def test_a_stale_cookie_alone_is_cleared(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    response = await read_with(config, f"session={cookie}")
    assert "Max-Age=0" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "stored",
    [
        b"\x80\x04\x95pickle",
        b"not json",
        b"[1, 2, 3]",
        b'{"v": 1, "d": [], "c": 0, "x": 0, "r": 0}',
        b'{"v": 99}',
        b'{"v":1,"c":0,"x":9e12,"r":0,"u":"alice","d":{},"e":""}',
        b'{"v":1,"c":0,"x":9e12,"r":0,"u":"alice","d":{},"e":"no spaces allowed"}',
    ],
)
async def test_a_corrupt_record_is_dropped_logged_and_deleted(
    config: SessionConfig, stored: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(config.keys.prefix)
    redis.Redis.from_url(REDIS_URL).set(key, stored, ex=60)
    with caplog.at_level(logging.WARNING, logger="session_middleware"):
        response = await read_with(config, f"session={cookie}")
    assert response.status_code == 200
    assert response.json()["user"] is None
    assert session_keys(config.keys.prefix) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert cookie.split(".")[1] not in warnings[0].getMessage()


async def test_redis_unreachable_fails_closed_with_a_503(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    cookie = await logged_in_cookie(config)
    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    response = await read_with(down, f"session={cookie}")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert "Traceback" not in response.text and "session store" in response.text
    assert "set-cookie" not in response.headers, "never delete a cookie because Redis is down"


async def test_redis_unreachable_at_write_time_gives_a_503_too(key_prefix: str) -> None:
    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    async with asgi_client(down) as client:
        response = await client.get("/set?key=a&value=1")
    assert response.status_code == 503
    assert "set-cookie" not in response.headers


async def test_redis_unreachable_can_be_raised_instead(key_prefix: str) -> None:
    down = sessions(
        secret_key=SECRET,
        redis_url=CLOSED_PORT_URL,
        key_prefix=key_prefix,
        redis_timeout=0.5,
        on_redis_error="raise",
    )
    transport = httpx.ASGITransport(app=down(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(StoreUnavailable) as raised:
            await client.get("/set?key=a&value=1")
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


def test_redis_unreachable_under_wsgi_fails_closed(key_prefix: str) -> None:
    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    with wsgi_client(down) as client:
        written = client.get("/set?key=a&value=1")
        read = client.get(
            "/read", headers={"cookie": "session=" + "a" * 24 + "." + "b" * 43 + ".c" * 30}
        )
    assert written.status_code == 503 and "session store" in written.text
    assert "set-cookie" not in written.headers
    assert read.status_code == 200  # an unverifiable cookie never reaches Redis


def test_wsgi_unreachable_with_a_valid_cookie_is_a_503(key_prefix: str) -> None:
    up = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    with wsgi_client(up) as client:
        cookie = client.get("/login?user=alice").cookies["session"]
    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    with wsgi_client(down) as client:
        response = client.get("/read", headers={"cookie": f"session={cookie}"})
    assert response.status_code == 503


def test_a_value_json_cannot_hold_raises_type_error_naming_the_key(config: SessionConfig) -> None:
    from session_middleware import Session

    session = Session()
    for key, value in [
        ("when", time),
        ("blob", b"bytes"),
        ("nan", float("nan")),
        ("nested", {"a": [1, {2: "int key"}]}),
        ("obj", object()),
    ]:
        with pytest.raises(TypeError, match=repr(key)):
            session[key] = value
    with pytest.raises(TypeError, match="keys must be str"):
        session[(1, 2)] = "x"  # type: ignore[index]
    assert dict(session) == {}


def test_top_level_keys_json_can_spell_are_stored_as_json_spells_them(
    config: SessionConfig,
) -> None:
    """As with Starlette's cookie sessions (json.dumps): 1 is stored as "1"."""
    from session_middleware import Session

    session = Session()
    session[1] = "x"  # type: ignore[index]
    session[None] = "y"  # type: ignore[index]
    assert session.snapshot() == {"1": "x", "null": "y"}
    assert session.changes({}) == ([("1", '"x"'), ("null", '"y"')], []) or sorted(
        session.changes({})[0]
    ) == [("1", '"x"'), ("null", '"y"')]


async def test_rotated_keys_keep_old_sessions_and_invalidation_reaches_them(
    key_prefix: str,
) -> None:
    old = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    rotated = sessions(
        secret_key=[SECRET, OTHER_SECRET], redis_url=REDIS_URL, key_prefix=key_prefix
    )
    old_cookie = await logged_in_cookie(old)
    assert (await read_with(rotated, f"session={old_cookie}")).json()["user"] == "alice"
    new_cookie = await logged_in_cookie(rotated)
    assert new_cookie.split(".")[0] != old_cookie.split(".")[0]
    await rotated.ainvalidate_user("alice")
    assert (await read_with(rotated, f"session={old_cookie}")).json()["rejected"] == "epoch"
    assert (await read_with(rotated, f"session={new_cookie}")).json()["rejected"] == "epoch"


async def test_absolute_lifetime_is_enforced_by_the_server(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_age=60)
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    plain = redis.Redis.from_url(REDIS_URL)
    assert 0 < plain.pttl(key) <= 60_000
    plain.hset(key, "x", "1")  # an absolute expiry long past; the TTL stays
    response = await read_with(config, f"session={cookie}")
    assert response.json()["user"] is None
    assert session_keys(key_prefix) == []


async def test_idle_timeout_expires_an_unused_session(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, idle_timeout=1)
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    assert 0 < redis.Redis.from_url(REDIS_URL).pttl(key) <= 1000
    time.sleep(1.1)
    assert (await read_with(config, f"session={cookie}")).json()["user"] is None


async def test_sliding_refresh_writes_at_most_once_per_interval(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        idle_timeout=3600,
        refresh_interval=1,
    )
    cookie = await logged_in_cookie(config)
    (key,) = session_keys(key_prefix)
    plain = redis.Redis.from_url(REDIS_URL)
    plain.pexpire(key, 100_000)
    for _ in range(3):
        await read_with(config, f"session={cookie}")
    assert plain.pttl(key) <= 100_000, "no refresh within the interval"
    time.sleep(1.05)
    await read_with(config, f"session={cookie}")
    assert plain.pttl(key) > 3_000_000, "refreshed once the interval passed"


async def test_a_write_back_never_resurrects_a_deleted_session(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    opened: Opened = await config.run_async(config.core.open(f"session={cookie}", time.time()))
    opened.session["late"] = "write"
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    await config.run_async(config.core.commit(opened, time.time()))
    assert session_keys(config.keys.prefix) == []


def test_empty_secrets_are_refused_and_weak_ones_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for empty in ["", [], [SECRET, ""]]:
        with pytest.raises(ConfigurationError):
            sessions(secret_key=empty)
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        sessions(secret_key=None)(lambda environ, start_response: [])  # at start-up
    for weak in ["secret", "changeme", "short-key"]:
        caplog.clear()
        sessions(secret_key=weak)  # accepted, as Starlette accepts it
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert f"'{weak}'" not in caplog.text and "short-key" not in caplog.text
    caplog.clear()
    sessions(secret_key=SECRET)
    assert caplog.records == []


def test_a_starlette_secret_is_a_key() -> None:
    from starlette.datastructures import Secret

    config = sessions(secret_key=Secret(SECRET))
    assert config.core.codec.encode(CookieRef("a" * 24, "b" * 43)) == sessions(
        secret_key=SECRET
    ).core.codec.encode(CookieRef("a" * 24, "b" * 43))


def test_same_site_none_without_https_only_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions(secret_key=SECRET, same_site="none")
    assert "https_only" in caplog.text
    caplog.clear()
    sessions(secret_key=SECRET, same_site="none", https_only=True)
    assert caplog.records == []
