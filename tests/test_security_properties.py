"""Security properties docs/security.md relies on that no other test pins down: the session
id's entropy, Redis never holding it, the cookie's attributes, and who wins a race."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import redis

from session_middleware import get_session, sessions
from session_middleware._records import SessionTooLarge

from .apps import wsgi_app
from .support import REDIS_URL, SECRET, keys_under
from .test_fuzz import cookie_of, wsgi_call


def test_session_ids_carry_256_random_bits_and_never_repeat(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookies = [cookie_of(wsgi_call(app, "/set?key=a&value=1")[1]) for _ in range(50)]
    cookies += [cookie_of(wsgi_call(app, "/login?user=alice")[1]) for _ in range(50)]
    ids = [cookie.split(".")[1] for cookie in cookies]
    assert len(set(ids)) == len(ids)
    assert {len(base64.urlsafe_b64decode(i + "=")) for i in ids} == {32}
    anonymous_tags = {cookie.split(".")[0] for cookie in cookies[:50]}
    assert len(anonymous_tags) == 50, "an anonymous session's tag is random too"
    config.redis.close()


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


def set_cookie_attributes(header: str) -> tuple[str, set[str]]:
    """The cookie's name=value pair, and its attributes in lower case (browsers read
    attribute names case-insensitively; the cookie is spelt as Starlette spells it)."""
    pair, *attributes = [part.strip() for part in header.split(";")]
    return pair, {attribute.lower() for attribute in attributes}


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


def test_a_browser_session_cookie_has_no_lifetime_but_the_server_still_ends_it(
    key_prefix: str,
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_age=None)
    _, headers, _ = wsgi_call(config(wsgi_app), "/login?user=alice")
    _, attributes = set_cookie_attributes(headers["set-cookie"])
    assert not any(a.startswith(("max-age", "expires")) for a in attributes)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttls = [client.pttl(key) for key in keys_under(key_prefix) if ":s:" in key]
    finally:
        client.close()
    assert len(ttls) == 1 and 0 < ttls[0] <= 14 * 24 * 3600 * 1000
    config.redis.close()


def test_logout_others_in_a_slow_request_still_wins_over_a_concurrent_write(
    key_prefix: str,
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    header = f"session={cookie_of(wsgi_call(app, '/login?user=alice')[1])}"
    laptop = f"session={cookie_of(wsgi_call(app, '/login?user=alice')[1])}"
    slow = config.run_sync(config.core.open(header, time.time()))
    fast = config.run_sync(config.core.open(header, time.time()))
    slow.session.logout_others()
    fast.session["cart"] = "3"
    config.run_sync(config.core.commit(fast, time.time()))
    config.run_sync(config.core.commit(slow, time.time()))
    body = wsgi_call(app, "/read", header)[2]
    assert (body["user"], body["data"]) == ("alice", {"cart": "3"})
    assert wsgi_call(app, "/read", laptop)[2]["rejected"] == "epoch"
    config.redis.close()


def test_a_session_over_max_session_bytes_raises_instead_of_dropping(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_session_bytes=1000
    )

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        with pytest.raises(SessionTooLarge, match="max_session_bytes"):
            session["one"] = "x" * 2000
        for key in ("a", "b", "c"):
            session[key] = "x" * 400  # each fits; together they do not
        start_response("200 OK", [])
        return [b"unreachable"]

    with pytest.raises(SessionTooLarge, match="over the limit of 1000"):
        wsgi_call(config(app), "/")
    assert keys_under(key_prefix) == [], "nothing was stored, nothing was cut"
    config.redis.close()


def test_only_the_cookie_header_carries_a_session(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    assert wsgi_call(app, f"/read?session={cookie}")[2]["user"] is None
    assert wsgi_call(app, "/read", f"other={cookie}; xsession={cookie}")[2]["user"] is None
    assert wsgi_call(app, "/read", f"session={cookie}")[2]["user"] == "alice"
    config.redis.close()


def test_logging_in_again_rotates_the_id_and_ends_the_old_one(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    before = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    wsgi_call(app, "/set?key=cart&value=3", f"session={before}")
    after = cookie_of(wsgi_call(app, "/login?user=alice", f"session={before}")[1])
    assert after.split(".")[1] != before.split(".")[1]
    assert wsgi_call(app, "/read", f"session={after}")[2]["data"] == {"cart": "3"}
    stale = wsgi_call(app, "/read", f"session={before}")
    assert stale[2]["user"] is None and "Max-Age=0" in stale[1]["set-cookie"]
    assert len(config.list_sessions("alice")) == 1
    config.redis.close()
