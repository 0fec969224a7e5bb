"""Cache headers on responses that carry the session, and the __Host- cookie prefix."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from session_middleware import ConfigurationError, SessionConfig, get_session, sessions

from .support import REDIS_URL, SECRET
from .support.apps import asgi_app, wsgi_app
from .support.http import set_cookie_attributes, wsgi_call

pytestmark = pytest.mark.anyio


async def own_cache_policy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    get_session(scope)["seen"] = True
    headers = [(b"cache-control", b"private, max-age=60"), (b"vary", b"Accept, Cookie")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_setting_the_cookie_forbids_caching_and_varies_on_cookie(
    config: SessionConfig,
) -> None:
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        created = await client.get("/login?user=alice")
        assert created.headers["cache-control"] == "no-store"
        assert created.headers["vary"] == "Cookie"
        read = await client.get("/read")
        assert "cache-control" not in read.headers and read.headers["vary"] == "Cookie"
        cleared = await client.get("/logout")
        assert cleared.headers["cache-control"] == "no-store"
        anonymous = await client.get("/untouched")
        assert "vary" not in anonymous.headers and "cache-control" not in anonymous.headers


async def test_the_apps_own_cache_policy_is_kept(config: SessionConfig) -> None:
    transport = httpx.ASGITransport(app=config(own_cache_policy))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/")
    assert "set-cookie" in response.headers
    assert response.headers.get_list("cache-control") == ["private, max-age=60"]
    assert response.headers.get_list("vary") == ["Accept, Cookie"]


def test_wsgi_responses_get_the_same_headers(config: SessionConfig) -> None:
    transport = httpx.WSGITransport(app=config(wsgi_app))
    with httpx.Client(transport=transport, base_url="http://t") as client:
        response = client.get("/set?key=a&value=1")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Cookie"


def test_host_prefixed_cookies_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="https_only"):
        sessions(secret_key=SECRET, session_cookie="__Host-session")
    with pytest.raises(ConfigurationError, match="path"):
        sessions(secret_key=SECRET, session_cookie="__Host-s", https_only=True, path="/app")
    with pytest.raises(ConfigurationError, match="domain"):
        sessions(secret_key=SECRET, session_cookie="__Host-s", https_only=True, domain="a.test")
    with pytest.raises(ConfigurationError, match="https_only"):
        sessions(secret_key=SECRET, session_cookie="__Secure-session")


async def test_a_host_prefixed_cookie_is_set_secure(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        session_cookie="__Host-session",
        https_only=True,
    )
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        response = await client.get("/login?user=alice")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-session=") and "secure" in cookie
        assert "path=/" in cookie and "domain" not in cookie
        assert (await client.get("/read")).json()["user"] == "alice"


def test_the_cookie_is_httponly_secure_samesite_and_host_only(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        session_cookie="__Host-id",
        https_only=True,
        same_site="strict",
        max_age=3600,
    )
    app = config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=alice")
    pair, attributes = set_cookie_attributes(headers["set-cookie"])
    assert pair.startswith("__Host-id=") and len(pair.encode()) <= 4096
    assert attributes == {"httponly", "secure", "samesite=strict", "path=/", "max-age=3600"}
    _, cleared, _ = wsgi_call(app, "/logout", pair)
    pair, attributes = set_cookie_attributes(cleared["set-cookie"])
    assert pair == "__Host-id="
    assert attributes == {
        "httponly",
        "secure",
        "samesite=strict",
        "path=/",
        "max-age=0",
        "expires=thu, 01 jan 1970 00:00:00 gmt",
    }
    assert cleared["cache-control"] == "no-store" and cleared["vary"] == "Cookie"
    config.redis.close()
