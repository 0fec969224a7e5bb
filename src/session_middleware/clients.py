"""The Redis clients of one configuration: one connection pool per face, reused."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis
import redis.asyncio


class ConfigurationError(RuntimeError):
    """The configuration cannot serve what was asked of it."""


def is_async_client(client: Any) -> bool:
    return asyncio.iscoroutinefunction(getattr(client, "execute_command", None))


class RedisClients:
    """A sync and an async client for one Redis, built from a URL or given.

    A URL-built async client is made per event loop (a redis.asyncio pool belongs to the
    loop that opened it), so tests and servers that run several loops just work.
    """

    def __init__(self, *, url: str | None, client: Any | None, timeout: float | None) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give exactly one of redis_url and redis")
        self.url = url
        self._timeout = timeout
        self._sync: Any | None = None
        self._given_async: Any | None = None
        if client is not None:
            if is_async_client(client):
                self._given_async = client
            else:
                self._sync = client
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def can_sync(self) -> bool:
        return self.url is not None or self._sync is not None

    @property
    def can_async(self) -> bool:
        return self.url is not None or self._given_async is not None

    def sync(self) -> Any:
        if self._sync is None:
            if self.url is None:
                raise ConfigurationError(
                    "this needs a sync Redis client, but an async one was given: "
                    "pass redis_url=..., or use the a-prefixed async method"
                )
            self._sync = redis.Redis.from_url(self.url, **self._options())
        return self._sync

    def async_(self) -> Any:
        if self._given_async is not None:
            return self._given_async
        if self.url is None:
            raise ConfigurationError(
                "this needs an async Redis client (redis.asyncio), but a sync one was given: "
                "pass redis_url=..., or a redis.asyncio client"
            )
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(self.url, **self._options())
            self._by_loop[loop] = client
        return client

    def _options(self) -> dict[str, Any]:
        if self._timeout is None:
            return {}
        return {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}
