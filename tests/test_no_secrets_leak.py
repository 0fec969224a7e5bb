"""Secrets stay secret: no log line carries a cookie, a session id or session data; a Redis
URL's credentials never reach an error, a repr, a traceback or a log; Redis never holds a
session id or a cookie."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
import uuid
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet

from session_middleware import ConfigurationError, SessionConfig, SessionMiddleware, sessions
from session_middleware._transport.clients import RedisClients
from session_middleware._transport.urls import redact_url
from session_middleware.epochs.redis import RedisEpochs

from .support import CLOSED_PORT_URL, REDIS_URL, SECRET, keys_under
from .support.apps import asgi_app, wsgi_app
from .support.http import asgi_call, cookie_of, wsgi_call
from .support.stored import Planted, record_key, redis_get, redis_hash, redis_plant

pytestmark = pytest.mark.anyio


def everything_under(prefix: str) -> str:
    """Every key and every value under the prefix, as one text."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        parts = []
        for key in keys_under(prefix):
            kind = client.type(key)
            value: Any
            if kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "hash":
                value = client.hgetall(key)
            else:
                assert kind == "string", f"{key} is a {kind}"
                value = client.get(key)
            parts.append(f"{key} {value!r}")
        return "\n".join(parts)
    finally:
        client.close()


class Secrets:
    """Everything that must never reach a log, collected as the lifecycle runs."""

    def __init__(self) -> None:
        self.values: set[str] = {SECRET}

    def cookie(self, value: str) -> str:
        _tag, session_id, signature = value.split(".")
        self.values |= {value, session_id, signature}
        return value

    def datum(self) -> str:
        marker = f"datum-{uuid.uuid4().hex}"
        self.values.add(marker)
        return marker

    def leaks(self, records: list[logging.LogRecord]) -> list[str]:
        handler = logging.Handler()
        handler.setFormatter(logging.Formatter("%(name)s %(message)s %(args)s"))
        texts = []
        for record in records:
            texts.append(handler.format(record))
            texts.append(repr(record.__dict__))
        return sorted({value for value in self.values for text in texts if value in text})


def corrupt(config: SessionConfig, cookie: str, planted: Planted) -> None:
    """Replace the session's record with a hash (or a key of another type)."""
    redis_plant(record_key(config, cookie), planted)


def epochs_of(config: SessionConfig, cookie: str) -> str:
    return redis_get(config.keys.epoch_key(cookie.split(".")[0]))


async def asgi_lifecycle(key_prefix: str, secrets: Secrets) -> None:
    fernet = Fernet.generate_key().decode()
    secrets.values.add(fernet)
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, encryption_key=fernet
    )
    app = config(asgi_app)

    async def get(target: str, cookie: str | None = None) -> tuple[dict[str, str], Any]:
        fields = [] if cookie is None else [f"session={cookie}".encode()]
        status, headers, body = await asgi_call(app, target, fields)
        assert status == 200
        return headers, body

    headers, _ = await get(f"/set?key=cart&value={secrets.datum()}")
    anonymous = secrets.cookie(cookie_of(headers))
    headers, _ = await get("/login?user=alice", anonymous)
    alice = secrets.cookie(cookie_of(headers))
    secrets.values.add(epochs_of(config, alice))
    await get(f"/set?key=note&value={secrets.datum()}", alice)
    await get("/read", alice)

    header = f"session={alice}"
    first = await config.run_async(config.core.open(header, time.time()))
    second = await config.run_async(config.core.open(header, time.time()))
    first.session["a"] = secrets.datum()
    second.session["b"] = secrets.datum()
    await config.run_async(config.core.commit(second, time.time()))
    await config.run_async(config.core.commit(first, time.time()))  # merges

    (listed,) = await config.alist_sessions("alice")
    headers, _ = await get("/login?user=alice")
    phone = secrets.cookie(cookie_of(headers))
    await get("/others", phone)
    assert (await get("/read", alice))[1]["rejected"] == "epoch"
    assert not await config.arevoke_session("alice", listed.handle)
    await config.ainvalidate_user("alice", delete=True)
    await get("/read", phone)

    now = str(time.time())
    stamps = {"c": now, "x": str(time.time() + 60), "r": now}
    garbage: list[Planted] = [
        {
            **stamps,
            "d:k": config.core.fields.seal("\x80\x04\x95" + secrets.datum(), "d:k"),
        },  # a value that is not JSON: it reads as None
        {"d:k": f'"{secrets.datum()}"'},  # no timestamps
        {**stamps, "d:k": secrets.datum()},  # not a Fernet token
        {**stamps, secrets.datum(): "1", "x": "nan"},  # a field named by a secret
        secrets.datum(),  # a string key, not a hash
    ]
    for planted in garbage:
        headers, _ = await get(f"/set?key=k&value={secrets.datum()}")
        victim = secrets.cookie(cookie_of(headers))
        corrupt(config, victim, planted)
        await get("/read", victim)

    headers, _ = await get(f"/set?key=k&value={secrets.datum()}")
    plain_reader = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    await asgi_call(plain_reader(asgi_app), "/read", [f"session={cookie_of(headers)}".encode()])
    secrets.cookie(cookie_of(headers))

    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    status, _, _ = await asgi_call(down(asgi_app), "/read", [f"session={phone}".encode()])
    assert status == 503
    await config.redis.aclose()
    await plain_reader.redis.aclose()


def wsgi_lifecycle(key_prefix: str, secrets: Secrets) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    _, headers, _ = wsgi_call(app, f"/set?key=cart&value={secrets.datum()}")
    anonymous = secrets.cookie(cookie_of(headers))
    _, headers, _ = wsgi_call(app, "/login?user=bob", f"session={anonymous}")
    bob = secrets.cookie(cookie_of(headers))
    secrets.values.add(epochs_of(config, bob))
    wsgi_call(app, f"/append?value={secrets.datum()}", f"session={bob}")
    carol = secrets.cookie(cookie_of(wsgi_call(app, "/login?user=carol")[1]))
    corrupt(config, carol, redis_hash(record_key(config, bob)))  # bob's, under carol
    assert wsgi_call(app, "/read", f"session={carol}")[2]["user"] is None
    now = time.time()
    corrupt(
        config,
        bob,
        {
            "c": str(now),
            "x": str(now + 60),
            "r": str(now),
            "u": '"bob"',
            "e": "",
            "d:s": f'"{secrets.datum()}"',
        },
    )
    wsgi_call(app, "/read", f"session={bob}")
    _, headers, _ = wsgi_call(app, "/login?user=bob")
    bob = secrets.cookie(cookie_of(headers))
    config.invalidate_user("bob")
    wsgi_call(app, "/read", f"session={bob}")
    _, headers, _ = wsgi_call(app, "/login?user=bob")
    bob = secrets.cookie(cookie_of(headers))
    wsgi_call(app, "/logout", f"session={bob}")
    down = sessions(
        secret_key=SECRET, redis_url=CLOSED_PORT_URL, key_prefix=key_prefix, redis_timeout=0.5
    )
    status, _, _ = wsgi_call(down(wsgi_app), "/read", f"session={anonymous}")
    assert status.startswith("503")
    config.redis.close()


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


def test_no_log_line_carries_a_cookie_a_session_id_or_data(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = Secrets()
    caplog.set_level(logging.DEBUG)
    asyncio.run(asgi_lifecycle(key_prefix, secrets))
    wsgi_lifecycle(key_prefix, secrets)
    ours = [r for r in caplog.records if r.name.startswith("session_middleware")]
    dropped = [r for r in ours if "dropped a session record" in r.getMessage()]
    assert len(dropped) == 6, "each corrupt, misplaced or undecryptable record, once"
    unreadable = [r for r in ours if "could not be read" in r.getMessage()]
    assert len(unreadable) == 2, "each value that is not JSON, once, when read"
    for record in dropped:
        assert re.search(r": key [0-9a-f]{12}$", record.getMessage()), "a fingerprint names it"
    assert len(secrets.values) > 20
    assert secrets.leaks(caplog.records) == []


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


def test_redis_never_holds_a_session_id_or_a_cookie(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, idle_timeout=600
    )
    app = config(wsgi_app)
    anonymous = cookie_of(wsgi_call(app, "/set?key=cart&value=3")[1])
    alice = cookie_of(wsgi_call(app, "/login?user=alice", f"session={anonymous}")[1])
    wsgi_call(app, "/set?key=theme&value=dark", f"session={alice}")
    phone = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    stored = everything_under(key_prefix)
    assert ":s:" in stored and ":i " in stored and ":e " in stored
    assert "'d:theme': '\"dark\"'" in stored and "'d:cart': '\"3\"'" in stored
    for cookie in (anonymous, alice, phone):
        _tag, session_id, signature = cookie.split(".")
        assert session_id not in stored and signature not in stored
    config.redis.close()
