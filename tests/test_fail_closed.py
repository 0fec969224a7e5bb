"""Redis unreachable is the 503 (or StoreUnavailable when asked to raise), under ASGI and
WSGI, at read and at write time: never a 500 and never an unverified session."""

from __future__ import annotations

import httpx
import pytest
import redis

from session_middleware import StoreUnavailable, sessions

from .support import CLOSED_PORT_URL, REDIS_URL, SECRET
from .support.apps import asgi_app
from .support.http import asgi_client, logged_in_cookie, read_with, wsgi_client

pytestmark = pytest.mark.anyio


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
