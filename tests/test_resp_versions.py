"""RESP2 and RESP3 give the same sessions: every way a user picks the protocol (a
``redis_url`` with ``?protocol=2`` or ``?protocol=3``, a redis-py client built with
``protocol=``, or neither, which is redis-py's own default) runs the package's operations
(login, read, write, logout, logout_others, list, revoke, invalidate_user, the devices
listing, the CLI) to the same results, and every reply the core is handed has the same
Python shape, whichever connection carried it (the multiplexed one, redis-py's pool, the
local cache's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import redis
import redis.asyncio

from session_middleware import SessionConfig, SessionEvent, sessions
from session_middleware._core import runners
from session_middleware._transport.clients import RedisClients
from session_middleware.cli import main
from session_middleware.devices import listing

from .support import REDIS_URL, SECRET, delete_prefix, new_prefix
from .support.apps import asgi_app, wsgi_app
from .support.devices import IPHONE_SAFARI, WINDOWS_CHROME
from .support.http import BASE_URL
from .support.local_cache import ready

# None: the URL or client names no protocol, and redis-py picks its default.
PROTOCOLS: tuple[int | None, ...] = (2, 3, None)


def with_protocol(url: str, protocol: int | None) -> str:
    """`url` asking for `protocol` (None: as it is, without one)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "protocol"]
    if protocol is not None:
        query.append(("protocol", str(protocol)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def shape(value: Any) -> Any:
    """What a reply is made of, with the values left out: the types, nested."""
    if isinstance(value, dict):
        return {"dict": sorted((repr(shape(k)), repr(shape(v))) for k, v in value.items())}
    if isinstance(value, (list, tuple)):
        return [shape(item) for item in value]
    return type(value).__name__


class Replies:
    """Every round trip of the core's steps: the commands' names, the replies' shapes."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], Any]] = []

    def note(self, commands: Any, replies: Any) -> None:
        names = tuple(str(command[0]) for command in commands)
        self.seen.append((names, shape(replies)))

    def wrap_sync(self, run: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(client: Any, commands: Any, *args: Any) -> Any:
            replies = run(client, commands, *args)
            self.note(commands, replies)
            return replies

        return recorded

    def wrap_async(self, run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def recorded(client: Any, commands: Any, *args: Any) -> Any:
            replies = await run(client, commands, *args)
            self.note(commands, replies)
            return replies

        return recorded


@contextlib.contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Replies]:
    replies = Replies()
    with monkeypatch.context() as patch:
        for name in ("run_sync", "run_replicated_sync"):
            patch.setattr(runners, name, replies.wrap_sync(getattr(runners, name)))
        for name in ("run_async", "run_replicated_async"):
            patch.setattr(runners, name, replies.wrap_async(getattr(runners, name)))
        yield replies


class Labels:
    """Session handles and ids as the order they were first seen in: each run mints its
    own, and two runs are compared by what they did with them."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def __call__(self, handle: str | None) -> str | None:
        if handle is None:
            return None
        return self._labels.setdefault(handle, f"session{len(self._labels)}")


def event_outcome(events: list[SessionEvent], label: Labels) -> list[Any]:
    return [(e.kind, e.user_id, label(e.handle), e.reason) for e in events]


def devices_outcome(config_listing: dict[str, Any], label: Labels) -> list[Any]:
    return [
        (label(s["handle"]), s["device"], s["ip"], s["current"]) for s in config_listing["sessions"]
    ]


# -- the operations, through WSGI and the sync API ------------------------------------------


def browser(config: SessionConfig, user_agent: str) -> httpx.Client:
    transport = httpx.WSGITransport(app=config(wsgi_app), remote_addr="203.0.113.9")
    return httpx.Client(transport=transport, base_url=BASE_URL, headers={"user-agent": user_agent})


def handle_of(config: SessionConfig, user: str, user_agent: str) -> str:
    (found,) = [s.handle for s in config.list_sessions(user) if s.user_agent == user_agent]
    return found


def operations_sync(config: SessionConfig) -> list[Any]:
    """The outcome of every operation, handles and times left out."""
    events: list[SessionEvent] = []
    config.listeners.add(events.append)
    label = Labels()
    out: list[Any] = []
    with browser(config, IPHONE_SAFARI) as phone, browser(config, WINDOWS_CHROME) as laptop:
        out.append(phone.get("/set?key=cart&value=1").json())
        out.append(phone.get("/login?user=alice").json())
        out.append(phone.get("/append?value=a").json())
        out.append(laptop.get("/login?user=alice").json())
        out.append(phone.get("/read").json())
        phone_handle = handle_of(config, "alice", IPHONE_SAFARI)
        laptop_handle = handle_of(config, "alice", WINDOWS_CHROME)
        out.append(devices_outcome(listing(config.list_sessions("alice"), phone_handle), label))
        out.append(laptop.get("/others").json())  # logout_others: the phone is out
        out.append(phone.get("/read").json())
        out.append(laptop.get("/read").json())
        state = config.user_state("alice")
        out.append((state.has_epoch, [label(s.handle) for s in state.sessions]))
        out.append(config.revoke_session("alice", phone_handle))
        out.append(config.revoke_session("alice", laptop_handle))
        out.append(laptop.get("/read").json())
        out.append(phone.get("/login?user=alice").json())
        config.invalidate_user("alice")
        out.append(phone.get("/read").json())
        out.append(laptop.get("/login?user=bob").json())
        out.append(laptop.get("/logout").json())
        config.invalidate_user("carol", delete=True)
        out.append(config.user_state("carol").has_epoch)
    out.append(event_outcome(events, label))
    return out


async def operations_async(config: SessionConfig) -> list[Any]:
    """operations_sync's twin, through ASGI and the async API."""
    events: list[SessionEvent] = []
    config.listeners.add(events.append)
    label = Labels()
    out: list[Any] = []
    app = config(asgi_app)

    def browser_of(user_agent: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1234))
        headers = {"user-agent": user_agent}
        return httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)

    async def handle_of(user: str, user_agent: str) -> str:
        listed = await config.alist_sessions(user)
        (found,) = [s.handle for s in listed if s.user_agent == user_agent]
        return found

    async with browser_of(IPHONE_SAFARI) as phone, browser_of(WINDOWS_CHROME) as laptop:
        out.append((await phone.get("/set?key=cart&value=1")).json())
        out.append((await phone.get("/login?user=alice")).json())
        out.append((await phone.get("/append?value=a")).json())
        out.append((await laptop.get("/login?user=alice")).json())
        out.append((await phone.get("/read")).json())
        phone_handle = await handle_of("alice", IPHONE_SAFARI)
        laptop_handle = await handle_of("alice", WINDOWS_CHROME)
        listed = listing(await config.alist_sessions("alice"), phone_handle)
        out.append(devices_outcome(listed, label))
        out.append((await laptop.get("/others")).json())
        out.append((await phone.get("/read")).json())
        out.append((await laptop.get("/read")).json())
        state = await config.auser_state("alice")
        out.append((state.has_epoch, [label(s.handle) for s in state.sessions]))
        out.append(await config.arevoke_session("alice", phone_handle))
        out.append(await config.arevoke_session("alice", laptop_handle))
        out.append((await laptop.get("/read")).json())
        out.append((await phone.get("/login?user=alice")).json())
        await config.ainvalidate_user("alice")
        out.append((await phone.get("/read")).json())
        out.append((await laptop.get("/login?user=bob")).json())
        out.append((await laptop.get("/logout")).json())
        await config.ainvalidate_user("carol", delete=True)
        out.append((await config.auser_state("carol")).has_epoch)
    out.append(event_outcome(events, label))
    return out


# -- the ways a user picks the protocol ----------------------------------------------------


def url_config(protocol: int | None, prefix: str, **options: Any) -> SessionConfig:
    url = with_protocol(REDIS_URL, protocol)
    return sessions(secret_key=SECRET, redis_url=url, key_prefix=prefix, **options)


def client_options(protocol: int | None) -> dict[str, Any]:
    return {} if protocol is None else {"protocol": protocol}


def run_sync_way(way: str, protocol: int | None, prefix: str) -> list[Any]:
    if way == "sync client":
        client = redis.Redis.from_url(REDIS_URL, **client_options(protocol))
        try:
            return operations_sync(sessions(secret_key=SECRET, redis=client, key_prefix=prefix))
        finally:
            client.close()
    config = url_config(protocol, prefix)
    try:
        return operations_sync(config)
    finally:
        config.redis.close()


async def run_async_way(way: str, protocol: int | None, prefix: str) -> list[Any]:
    if way == "async client":
        client = redis.asyncio.Redis.from_url(REDIS_URL, **client_options(protocol))
        try:
            config = sessions(secret_key=SECRET, redis=client, key_prefix=prefix)
            return await operations_async(config)
        finally:
            await client.aclose()
    options: dict[str, Any] = {
        "url, multiplexed": {},
        "url, redis-py's pool": {"redis_multiplex": False},
        "url, local cache, multiplexed": {"local_cache": 1000},
        "url, local cache, redis-py's pool": {"local_cache": 1000, "redis_multiplex": False},
    }[way]
    config = url_config(protocol, prefix, **options)
    try:
        if "local_cache" in options:
            await ready(config)
        return await operations_async(config)
    finally:
        await config.redis.aclose()


@pytest.fixture
def prefixes() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(new_prefix())
        return made[-1]

    yield make
    for prefix in made:
        delete_prefix(prefix)


def assert_same_under_each_protocol(
    run: Callable[[int | None, str], list[Any]],
    prefixes: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run` (the operations under a protocol, with a key prefix of their own) gives RESP2's
    outcome under each protocol, from replies of the same shapes."""
    results: dict[int | None, tuple[list[Any], Replies]] = {}
    for protocol in PROTOCOLS:
        with recording(monkeypatch) as replies:
            results[protocol] = (run(protocol, prefixes()), replies)
    outcome, replies = results[2]
    for protocol in PROTOCOLS[1:]:
        other_outcome, other_replies = results[protocol]
        assert other_outcome == outcome, f"protocol={protocol}: another outcome than RESP2's"
        for index, (seen, other) in enumerate(zip(replies.seen, other_replies.seen, strict=True)):
            assert other == seen, f"protocol={protocol}, round trip {index}: {other} != {seen}"


@pytest.mark.parametrize("way", ["url", "sync client"])
def test_the_sync_face_gives_the_same_under_resp2_and_resp3(
    way: str, prefixes: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(protocol: int | None, prefix: str) -> list[Any]:
        return run_sync_way(way, protocol, prefix)

    assert_same_under_each_protocol(run, prefixes, monkeypatch)


@pytest.mark.parametrize(
    "way",
    [
        "url, multiplexed",
        "url, redis-py's pool",
        "url, local cache, multiplexed",
        "url, local cache, redis-py's pool",
        "async client",
    ],
)
def test_the_async_face_gives_the_same_under_resp2_and_resp3(
    way: str, prefixes: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(protocol: int | None, prefix: str) -> list[Any]:
        return asyncio.run(run_async_way(way, protocol, prefix))

    assert_same_under_each_protocol(run, prefixes, monkeypatch)


def cli(capsys: pytest.CaptureFixture[str], url: str, prefix: str, *args: str) -> Any:
    options = ["--redis-url", url, "--key-prefix", prefix, "--secret-key", SECRET, "--json"]
    code = main([*options, *args])
    return code, json.loads(capsys.readouterr().out)


def cli_outcome(capsys: pytest.CaptureFixture[str], protocol: int | None, prefix: str) -> Any:
    url = with_protocol(REDIS_URL, protocol)
    config = sessions(secret_key=SECRET, redis_url=url, key_prefix=prefix)
    label = Labels()
    with browser(config, IPHONE_SAFARI) as phone, browser(config, WINDOWS_CHROME) as laptop:
        phone.get("/login?user=alice")
        laptop.get("/login?user=alice")
    config.redis.close()
    out: list[Any] = []
    code, listed = cli(capsys, url, prefix, "sessions", "alice")
    out.append((code, [(label(s["handle"]), s["device"], s["ip"]) for s in listed]))
    out.append(cli(capsys, url, prefix, "revoke", "alice", listed[0]["handle"]))
    out.append(cli(capsys, url, prefix, "revoke", "alice", listed[0]["handle"]))
    code, invalidated = cli(capsys, url, prefix, "invalidate", "alice", "--delete")
    out.append((code, {k: v for k, v in invalidated.items() if k != "where"}))
    out.append(cli(capsys, url, prefix, "sessions", "alice"))
    code, checked = cli(capsys, url, prefix, "check")
    varying = ("ping_ms_median", "keys", "key_prefix")
    out.append((code, {k: v for k, v in checked.items() if k not in varying}))
    out.append(checked["keys"]["sessions"])
    return out


def test_the_cli_gives_the_same_under_resp2_and_resp3(
    prefixes: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = {protocol: cli_outcome(capsys, protocol, prefixes()) for protocol in PROTOCOLS}
    assert outcomes[3] == outcomes[2]
    assert outcomes[None] == outcomes[2]


# -- the multiplexed connection, command by command ------------------------------------------


def audited_commands(prefix: str) -> list[tuple[Any, ...]]:
    """Every command the package sends on the multiplexed connection, and one of each reply
    type RESP3 adds (map, set, double, boolean-ish, null) and of each error."""
    string, record, index, members = (prefix + name for name in ("str", "rec", "idx", "set"))
    missing = prefix + "missing"
    return [
        ("SET", string, "v", "PX", 60_000),
        ("SET", string, "v", "PX", 60_000, "NX"),
        ("GET", string),
        ("GET", missing),
        ("MGET", string, missing),
        ("HSET", record, "c", "1", "e", "epoch"),
        ("HGETALL", record),
        ("HGETALL", missing),
        ("HGET", record, "e"),
        ("HGET", record, "nope"),
        ("EXISTS", record, missing),
        ("PEXPIRE", record, 60_000),
        ("PEXPIRE", missing, 60_000),
        ("ZADD", index, "1.5", "handle"),
        ("ZSCORE", index, "handle"),
        ("ZSCORE", index, "nope"),
        ("ZRANGE", index, "0", "+inf", "BYSCORE"),
        ("SADD", members, "x"),
        ("SMEMBERS", members),
        ("PING",),
        ("EVAL", "return {1, false, 'x', {2, true}}", 0),
        ("EVAL", "return redis.call('HGETALL', KEYS[1])", 1, record),
        ("EVAL", "return redis.pcall('GET', KEYS[1])", 1, missing),
        ("EVAL", "return redis.error_reply('refused')", 0),
        ("EVAL", "return redis.status_reply('FINE')", 0),
        ("GET", record),  # WRONGTYPE
        ("ZREM", index, "handle", "nope"),
        ("DEL", string, record, index, members, missing),
    ]


async def redis_py_replies(commands: list[tuple[Any, ...]], protocol: int) -> list[Any]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, protocol=protocol)
    replies: list[Any] = []
    try:
        for command in commands:
            try:
                replies.append(await client.execute_command(*command))
            except redis.ResponseError as error:
                replies.append(error)
    finally:
        await client.aclose()
    return replies


async def multiplexed_replies(commands: list[tuple[Any, ...]], url: str) -> list[Any]:
    clients = RedisClients(url=url, client=None, timeout=5.0)
    try:
        multiplexed = clients.async_()
        assert clients.multiplexed
        replies = []
        for command in commands:
            (reply,) = await multiplexed.run([command], errors_as_replies=True)
            replies.append(reply)
        return replies
    finally:
        await clients.aclose()


def comparable(reply: Any) -> Any:
    if isinstance(reply, Exception):
        return (type(reply).__name__, str(reply))
    return (shape(reply), reply)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: f"protocol={p}")
def test_the_multiplexed_connection_replies_as_redis_py_does_with_resp2(
    protocol: int | None, key_prefix: str
) -> None:
    commands = audited_commands(key_prefix)
    url = with_protocol(REDIS_URL, protocol)
    replies = asyncio.run(multiplexed_replies(commands, url))
    expected = asyncio.run(redis_py_replies(commands, protocol=2))
    for command, reply, wanted in zip(commands, replies, expected, strict=True):
        if command[0] == "HGETALL":  # left as RESP2 sends it, flat (RESP3 sends a map)
            assert isinstance(reply, list)
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        assert comparable(reply) == comparable(wanted), command


@pytest.mark.parametrize(("protocol", "spoken"), [(None, "2"), (2, "2"), (3, "3")])
def test_clients_built_from_a_url_speak_resp2_unless_it_asks_for_resp3(
    protocol: int | None, spoken: str
) -> None:
    """redis-py 8 would agree on RESP3, where a session's HGETALL comes as a map that
    hiredis builds field by field; the URL's own `protocol` still wins."""
    clients = RedisClients(
        url=with_protocol(REDIS_URL, protocol), client=None, timeout=2.0, multiplex=False
    )

    def resp(hello: Any) -> str:
        """The protocol a HELLO with no version names (a flat list in RESP2, a map in RESP3;
        CLIENT INFO's `resp` field is Redis 7's)."""
        if isinstance(hello, (list, tuple)):
            hello = dict(zip(hello[::2], hello[1::2], strict=True))
        named = {k.decode() if isinstance(k, bytes) else k: v for k, v in hello.items()}
        return str(named["proto"])

    async def spoken_async() -> str:
        client = clients.async_()
        try:
            return resp(await client.execute_command("HELLO"))
        finally:
            await clients.aclose()

    try:
        assert resp(clients.sync().execute_command("HELLO")) == spoken
        assert asyncio.run(spoken_async()) == spoken
    finally:
        clients.close()
