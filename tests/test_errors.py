"""One error tree: every error the package raises is a SessionError, importable from the
package, carrying its data, and none rides on a redis-py exception class."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio
import redis.exceptions

import session_middleware
from session_middleware import errors, sessions

from .support import REDIS_URL, SECRET
from .support.apps import asgi_app
from .support.redis_servers import RedisServer, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio


def test_every_error_is_a_session_error_exported_by_the_package() -> None:
    for name in errors.__all__:
        error = getattr(errors, name)
        assert getattr(session_middleware, name) is error
        assert issubclass(error, session_middleware.SessionError)
        assert not issubclass(error, redis.exceptions.RedisError), name


def test_errors_carry_their_data() -> None:
    too_large = session_middleware.SessionTooLarge("the session would take", 70_000, 65_536)
    assert (too_large.size, too_large.limit) == (70_000, 65_536)
    assert isinstance(too_large, ValueError)
    short = session_middleware.NotReplicated(0, 1)
    assert (short.acknowledged, short.wanted) == (0, 1)
    unknown = session_middleware.UnknownUser("no user 7", user_id=7)
    assert unknown.user_id == 7 and isinstance(unknown, LookupError)
    assert issubclass(session_middleware.InvalidationUncertain, session_middleware.StoreUnavailable)


class BrokenOnce(redis.asyncio.Redis):  # type: ignore[type-arg]
    """A real client whose first command fails with a client library's own bug, as
    redis-py's async cluster client does on a cold start ('NoneType' has no 'writelines')."""

    failures = 1

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if BrokenOnce.failures:
            BrokenOnce.failures -= 1
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await super().execute_command(*args, **options)


async def test_a_client_library_bug_is_a_503_never_a_500(key_prefix: str) -> None:
    client = BrokenOnce.from_url(REDIS_URL)
    config = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix)
    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as browser:
        first = await browser.get("/set?key=a&value=1")
        assert first.status_code == 503, first.text
        assert "Traceback" not in first.text
        assert (await browser.get("/set?key=a&value=1")).status_code == 200
    await client.aclose()


def test_scripts_run_by_sha_and_are_reloaded_after_a_flush(server: RedisServer) -> None:
    """Scripts go by EVALSHA; a server that lost them (restart, failover, SCRIPT FLUSH)
    answers NOSCRIPT, and the command is sent again with EVAL, alone or in a pipeline."""
    from .support.apps import wsgi_app

    config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix="sha:")
    app = config(wsgi_app)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        client.get("/login?user=alice")
        client.get("/set?key=a&value=1")
        with server.client() as admin:
            admin.script_flush()
            client.get("/login?user=alice")  # a pipeline: the old record's DEL, then LOGIN
            admin.script_flush()
            client.get("/set?key=b&value=2")
            client.get("/set?key=c&value=3")  # the write script, loaded again: by its SHA
            assert client.get("/read").json()["data"] == {"a": "1", "b": "2", "c": "3"}
            calls = admin.info("commandstats")
        assert calls["cmdstat_evalsha"]["calls"] > calls["cmdstat_eval"]["calls"]
    config.close()
