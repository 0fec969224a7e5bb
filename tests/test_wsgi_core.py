"""The same lifecycle through the WSGI driver: same decisions, same round trips."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from session_middleware import SessionConfig, sessions

from .support import SECRET
from .support.apps import wsgi_app
from .support.counting import Counter, counted_sync_client


@dataclass
class Rig:
    config: SessionConfig
    counter: Counter

    def client(self) -> httpx.Client:
        transport = httpx.WSGITransport(app=self.config(wsgi_app))
        return httpx.Client(transport=transport, base_url="http://testserver")


@pytest.fixture
def rig(key_prefix: str) -> Iterator[Rig]:
    counter = Counter()
    client = counted_sync_client(counter)
    yield Rig(sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix), counter)
    client.close()


def test_untouched_without_cookie_costs_nothing(rig: Rig) -> None:
    with rig.client() as client:
        response = client.get("/untouched")
    assert "set-cookie" not in response.headers
    assert rig.counter.round_trips == 0


def test_round_trips_match_the_asgi_driver(rig: Rig) -> None:
    with rig.client() as client:
        client.get("/login?user=alice")
        rig.counter.reset()
        assert client.get("/read").json()["user"] == "alice"
        assert (rig.counter.round_trips, rig.counter.commands) == (1, ["HGETALL", "GET"])
        rig.counter.reset()
        client.get("/set?key=a&value=1")
        assert (rig.counter.round_trips, rig.counter.commands) == (2, ["HGETALL", "GET", "WRITE"])
        rig.counter.reset()
        client.get("/others")
        assert rig.counter.round_trips == 3  # the read, the durable compare-and-set, the write


def test_invalidate_user_from_a_script(rig: Rig) -> None:
    with rig.client() as phone, rig.client() as laptop:
        phone.get("/login?user=carol")
        laptop.get("/login?user=carol")
        rig.config.invalidate_user("carol")
        assert phone.get("/read").json() == {"user": None, "rejected": "epoch", "data": {}}
        assert laptop.get("/read").json()["rejected"] == "epoch"
        phone.get("/login?user=carol")
        assert phone.get("/read").json()["user"] == "carol"


def test_logout_clears_the_cookie(rig: Rig) -> None:
    with rig.client() as client:
        client.get("/login?user=alice")
        response = client.get("/logout")
        assert "Max-Age=0" in response.headers["set-cookie"]
        assert client.get("/read").json()["user"] is None


def test_an_async_client_cannot_serve_a_wsgi_app(key_prefix: str) -> None:
    import redis.asyncio

    from session_middleware import ConfigurationError

    config = sessions(secret_key=SECRET, redis=redis.asyncio.Redis(), key_prefix=key_prefix)
    with pytest.raises(ConfigurationError, match="WSGI"):
        config(wsgi_app)
