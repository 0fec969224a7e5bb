"""No log line, at any level and from any logger, carries a cookie, a session id or session
data: checked over whole lifecycles through both drivers, corrupt records included."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet

from session_middleware import SessionConfig, sessions

from .apps import asgi_app, wsgi_app
from .support import REDIS_URL, SECRET
from .test_fuzz import (
    Planted,
    asgi_call,
    cookie_of,
    record_key,
    redis_get,
    redis_hash,
    redis_plant,
    wsgi_call,
)

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


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
        },  # not JSON
        {"d:k": f'"{secrets.datum()}"'},  # no timestamps
        {**stamps, "d:k": secrets.datum()},  # not a Fernet token
        {**stamps, secrets.datum(): "1"},  # an unknown field, named by a secret
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


def test_no_log_line_carries_a_cookie_a_session_id_or_data(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = Secrets()
    caplog.set_level(logging.DEBUG)
    asyncio.run(asgi_lifecycle(key_prefix, secrets))
    wsgi_lifecycle(key_prefix, secrets)
    ours = [r for r in caplog.records if r.name.startswith("session_middleware")]
    dropped = [r for r in ours if "dropped a session record" in r.getMessage()]
    assert len(dropped) == 8, "each corrupt, misplaced or undecryptable record, once"
    for record in dropped:
        assert re.search(r": key [0-9a-f]{12}$", record.getMessage()), "a fingerprint names it"
    assert len(secrets.values) > 20
    assert secrets.leaks(caplog.records) == []
