"""An ended session stays ended: a request in flight never writes back a session that a
logout, logout_others or invalidation ended, and an ending never removes a session created
after it."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import redis

from session_middleware import SessionConfig, get_session, sessions
from session_middleware._core.lifecycle import Opened
from session_middleware._core.steps import RedisIO
from session_middleware._core.user_sessions import UserSessions
from session_middleware._transport.round_trip import run_sync

from .support import REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.http import cookie_of, logged_in_cookie, wsgi_call
from .support.stored import record_key, redis_get, redis_hash, session_keys

pytestmark = pytest.mark.anyio


def restarting_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Logs in, starts a response, then replaces it with an error page (PEP 3333 allows
    a second start_response call with exc_info until the body starts)."""
    get_session(environ).login("alice")
    start_response("200 OK", [("content-type", "text/plain")])
    try:
        raise RuntimeError("failed after start_response")
    except RuntimeError:
        start_response(
            "500 Internal Server Error", [("content-type", "text/plain")], sys.exc_info()
        )
    return [b"error page"]


async def test_a_write_back_never_resurrects_a_deleted_session(config: SessionConfig) -> None:
    cookie = await logged_in_cookie(config)
    opened: Opened = await config.run_async(config.core.open(f"session={cookie}", time.time()))
    opened.session["late"] = "write"
    redis.Redis.from_url(REDIS_URL).delete(*session_keys(config.keys.prefix))
    await config.run_async(config.core.commit(opened, time.time()))
    assert session_keys(config.keys.prefix) == []


def test_a_concurrent_write_does_not_undo_logout_others_on_the_same_session(
    key_prefix: str,
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    header = f"session={cookie_of(wsgi_call(app, '/login?user=alice')[1])}"
    slow = config.run_sync(config.core.open(header, time.time()))
    fast = config.run_sync(config.core.open(header, time.time()))
    fast.session.logout_others()
    config.run_sync(config.core.commit(fast, time.time()))
    slow.session["late"] = "1"
    # Loaded with the epoch logout_others replaced, the slow write applies nothing
    # (docs/security.md, "Concurrency"): least of all that old epoch.
    assert config.run_sync(config.core.commit(slow, time.time())).interrupted == "epoch"
    body = wsgi_call(app, "/read", header)[2]
    assert (body["user"], body["rejected"], body["data"]) == ("alice", None, {})
    cookie = header.split("=", 1)[1]
    stamped = redis_hash(record_key(config, cookie))["e"]
    assert stamped == redis_get(config.keys.epoch_key(cookie.split(".")[0]))
    assert slow.record is not None and stamped != slow.record.epoch
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


def test_a_login_during_invalidate_with_delete_stays_listed(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    wsgi_call(app, "/login?user=alice")
    config.epochs.bump("alice")
    step = UserSessions(config.core).delete_all("alice")
    read = next(step)
    assert isinstance(read, RedisIO)
    listed = run_sync(config.redis.sync(), read.commands)
    fresh = cookie_of(wsgi_call(app, "/login?user=alice")[1])  # lands between read and delete
    delete = step.send(listed)
    assert isinstance(delete, RedisIO)
    run_sync(config.redis.sync(), delete.commands)
    with pytest.raises(StopIteration):
        step.send(None)
    assert wsgi_call(app, "/read", f"session={fresh}")[2]["user"] == "alice"
    assert len(config.list_sessions("alice")) == 1
    config.redis.close()


def test_a_restarted_wsgi_response_commits_the_session_once(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    status, headers, _ = wsgi_call(config(restarting_app), "/")
    assert status.startswith("500")
    assert len(config.list_sessions("alice")) == 1
    read = wsgi_call(config(wsgi_app), "/read", f"session={cookie_of(headers)}")
    assert read[2]["user"] == "alice"
    config.redis.close()
