"""A Redis URL's credentials never reach an error message, a repr, a traceback or a log."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest

from session_middleware import ConfigurationError, SessionMiddleware, sessions
from session_middleware._redis.clients import RedisClients
from session_middleware._redis.urls import redact_url
from session_middleware.epochs.redis import RedisEpochs

from .apps import asgi_app
from .support import SECRET

pytestmark = pytest.mark.anyio

PASSWORD = "hunter2-Zq8-must-not-leak"

MALFORMED = [
    f"redis://:{PASSWORD}@127.0.0.1:notaport/0",  # redis-py's parser fails lazily
    f"redis://user:{PASSWORD}@127.0.0.1:99999/0",
    f"redis://user:{PASSWORD}@[::1:6379/0",
    f"redis://user:{PASSWORD}@127.0.0.1:6379/0?socket_timeout=soon",
    f"redis://:{PASSWORD}/x@127.0.0.1:6379/0",  # urllib reads part of it as the port
    f"redis:/user:{PASSWORD}@127.0.0.1:6379/0",  # no scheme://
    f"http://user:{PASSWORD}@127.0.0.1/0",
    f"redis+cluster://user:{PASSWORD}@127.0.0.1:7000/x/y",
    f"redis+cluster://user:{PASSWORD}@127.0.0.1:7000/3",
    f"redis+cluster://user:{PASSWORD}@127.0.0.1:port",
    f"redis+sentinel://user:{PASSWORD}@127.0.0.1:26379",
    f"redis+sentinel://user:{PASSWORD}@127.0.0.1:26379/mymaster?socket_timeout=x",
    f"redis://127.0.0.1:6379/0?password={PASSWORD}&socket_timeout=soon",
    f"redis+sentinel://127.0.0.1/m?sentinel_password={PASSWORD}&max_connections=x",
]


def _everything_shown(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_refused_without_its_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for build in (
        lambda: sessions(secret_key=SECRET, redis_url=url),
        lambda: SessionMiddleware(asgi_app, secret_key=SECRET, redis_url=url),
        lambda: sessions(secret_key=SECRET, epochs=RedisEpochs(redis_url=url)),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        shown = _everything_shown(caught.value)
        assert PASSWORD not in shown
        assert "***" in str(caught.value)
        # No parser's exception is chained: theirs may quote the URL.
        error = caught.value
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
    assert PASSWORD not in caplog.text


def test_the_masked_url_keeps_what_helps_and_hides_every_credential() -> None:
    assert (
        redact_url("redis://app:pw@redis.internal:6380/2")
        == "redis://app:***@redis.internal:6380/2"
    )
    assert redact_url("redis://pw@host") == "redis://***@host"
    assert redact_url("rediss://:p/w?x#y@host:1") == "rediss://:***@host:1"
    assert (
        redact_url("redis+sentinel://a:b@s1,s2/mymaster?sentinel_password=c&db=1")
        == "redis+sentinel://a:***@s1,s2/mymaster?sentinel_password=***&db=1"
    )
    assert redact_url("unix://:pw@/run/redis.sock?db=0") == "unix://:***@/run/redis.sock?db=0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url(f"no scheme {PASSWORD}@host") == "***@host"


def test_reprs_of_a_configuration_hide_the_password() -> None:
    for url in (
        f"redis://user:{PASSWORD}@127.0.0.1:1/0",
        f"redis+sentinel://user:{PASSWORD}@127.0.0.1:1/mymaster?sentinel_password={PASSWORD}",
    ):
        clients = RedisClients(url=url, client=None, timeout=0.5)
        assert PASSWORD not in repr(clients)
        assert clients.target is not None
        assert PASSWORD not in repr(clients.target)


async def test_a_request_refused_for_a_dead_redis_logs_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://user:{PASSWORD}@127.0.0.1:1/0"
    app = sessions(secret_key=SECRET, redis_url=url, redis_timeout=0.5)(asgi_app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/set", params={"key": "cart", "value": "1"})
    assert response.status_code == 503
    assert PASSWORD not in response.text
    assert PASSWORD not in caplog.text
    for record in caplog.records:
        assert PASSWORD not in repr(record.__dict__)
