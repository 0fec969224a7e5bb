"""The write path under adversarial interleavings, on the real Redis.

A request is held between loading its session and committing it; meanwhile the user is
invalidated, the session revoked or deleted; then the request is released. Whatever the
held request was doing (a plain write, logout_others, a login that rotates the id), the
ended session stays ended, no new epoch is adopted, and the user's other devices are
unaffected. Then many writers on one session: no lost key, no error.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest

from session_middleware import SessionConfig, SessionTooLarge, get_session, sessions

from .support import REDIS_URL, SECRET, keys_under
from .support.http import wsgi_client
from .support.redis_servers import RedisServer, server
from .support.stored import redis_hash

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.anyio

ACTIONS = ["write", "logout_others", "login"]
OUTSIDE = ["invalidate", "invalidate_delete", "revoke"]


def act(session: Any, path: str, query: dict[str, str]) -> None:
    """What a request does to its session, by path."""
    if path == "/login":
        session.login(query["user"])
    elif path in ("/set", "/held/write"):
        session[query.get("key", "k")] = query.get("value", "v")
    elif path == "/held/logout_others":
        session.logout_others()
    elif path == "/held/login":
        session.login(session.user_id)  # rotation, as after a privilege change
        session["rotated"] = True


def body_of(session: Any) -> bytes:
    return json.dumps({"user": session.user_id, "data": dict(session)}).encode()


class AsyncGate:
    """An ASGI app whose /held/* requests wait, session loaded, until released."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = get_session(scope)
        query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
        act(session, scope["path"], query)
        if scope["path"].startswith("/held/"):
            self.loaded.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body_of(session)})


class ThreadGate:
    """A WSGI app whose /held/* requests wait, session loaded, until released."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.release = threading.Event()

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        query = dict(p.split("=") for p in environ.get("QUERY_STRING", "").split("&") if p)
        act(session, environ["PATH_INFO"], query)
        if environ["PATH_INFO"].startswith("/held/"):
            self.loaded.set()
            assert self.release.wait(10)
        start_response("200 OK", [("content-type", "application/json")])
        return [body_of(session)]


async def outside(config: SessionConfig, what: str, user: str, handle: str) -> None:
    """What happens to the user from elsewhere while the request is held."""
    if what == "revoke":
        assert await config.arevoke_session(user, handle)
    else:
        await config.ainvalidate_user(user, delete=what == "invalidate_delete")


def records(config: SessionConfig) -> list[str]:
    return [key for key in keys_under(config.keys.prefix) if ":s:" in key]


def async_client(config: SessionConfig, app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=config(app)), base_url="http://t")


def sync_client(config: SessionConfig, app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=config(app)), base_url="http://t")


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("what", OUTSIDE)
async def test_asgi_a_held_request_cannot_undo_an_ending(
    config: SessionConfig, action: str, what: str
) -> None:
    gate = AsyncGate()
    async with async_client(config, gate.app) as thief, async_client(config, gate.app) as owner:
        await thief.get("/login?user=alice")
        stolen = thief.cookies["session"]
        (listed,) = await config.alist_sessions("alice")
        held = asyncio.create_task(thief.get(f"/held/{action}"))
        await gate.loaded.wait()
        await outside(config, what, "alice", listed.handle)
        await owner.get("/login?user=alice")  # the owner signs in again, after the ending
        gate.release.set()
        response = await held
        await assert_ended(config, response, stolen, owner, what)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("what", OUTSIDE)
async def test_wsgi_a_held_request_cannot_undo_an_ending(
    config: SessionConfig, action: str, what: str
) -> None:
    gate = ThreadGate()
    with sync_client(config, gate.app) as thief, sync_client(config, gate.app) as owner:
        thief.get("/login?user=alice")
        stolen = thief.cookies["session"]
        (listed,) = config.list_sessions("alice")
        result: list[httpx.Response] = []
        held = threading.Thread(target=lambda: result.append(thief.get(f"/held/{action}")))
        held.start()
        assert gate.loaded.wait(10)
        await outside(config, what, "alice", listed.handle)
        owner.get("/login?user=alice")
        gate.release.set()
        held.join(10)
        (response,) = result
        await assert_ended(config, response, stolen, _Sync(owner), what)


@pytest.mark.parametrize("what", OUTSIDE)
async def test_a_held_logout_others_with_sql_epochs_cannot_undo_an_ending(
    key_prefix: str, tmp_path: Any, what: str
) -> None:
    """The epochs in SQL (SQLite), the bump a compare-and-set there: a held logout_others
    of a session revoked meanwhile must not end the owner's new session either."""
    from session_middleware.epochs.sql import SQLEpochs

    epochs = SQLEpochs.managed(f"sqlite+aiosqlite:///{tmp_path}/epochs.db")
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix,
                      epochs=epochs)  # fmt: skip
    await epochs.acreate_table()
    gate = AsyncGate()
    async with async_client(config, gate.app) as thief, async_client(config, gate.app) as owner:
        await thief.get("/login?user=alice")
        stolen = thief.cookies["session"]
        (listed,) = await config.alist_sessions("alice")
        held = asyncio.create_task(thief.get("/held/logout_others"))
        await gate.loaded.wait()
        await outside(config, what, "alice", listed.handle)
        await owner.get("/login?user=alice")
        gate.release.set()
        response = await held
        await assert_ended(config, response, stolen, owner, what)
    await epochs.adispose()


class _Sync:
    """A sync client behind the async client's get, for the shared assertions."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return self.client.get(path, **options)


async def assert_ended(
    config: SessionConfig, response: httpx.Response, stolen: str, owner: Any, what: str
) -> None:
    assert response.status_code == 200
    reissued = response.cookies.get("session")
    # The owner's new device was not signed out by the held request.
    mine = await owner.get("/me")
    assert json.loads(mine.content)["user"] == "alice"
    # Whatever cookie the held request left its client with, it is not signed in.
    for cookie in {stolen, reissued} - {None, ""}:
        async with async_client(config, AsyncGate().app) as replay:
            replayed = await replay.get("/me", headers={"cookie": f"session={cookie}"})
        assert json.loads(replayed.content)["user"] is None, (what, cookie == stolen)
    assert len(await config.alist_sessions("alice")) == 1
    if what != "invalidate":
        # No record was brought back: only the owner's new session is stored.
        assert len(records(config)) == 1


async def test_a_held_logout_others_adopts_nothing(config: SessionConfig) -> None:
    """The attack of the stolen cookie: its slow 'log out my other devices' lands after the
    owner's 'log out everywhere'; it must neither survive nor end the owner's new sessions."""
    gate = AsyncGate()
    async with async_client(config, gate.app) as thief, async_client(config, gate.app) as owner:
        await thief.get("/login?user=alice")
        epoch_before = config.epochs.get("alice")
        held = asyncio.create_task(thief.get("/held/logout_others"))
        await gate.loaded.wait()
        await config.ainvalidate_user("alice")
        epoch_invalidated = config.epochs.get("alice")
        await owner.get("/login?user=alice")
        gate.release.set()
        await held
        assert config.epochs.get("alice") == epoch_invalidated != epoch_before
        assert json.loads((await thief.get("/me")).content)["user"] is None
        assert json.loads((await owner.get("/me")).content)["user"] == "alice"


async def test_logout_others_without_interference_still_works(config: SessionConfig) -> None:
    gate = AsyncGate()
    async with async_client(config, gate.app) as here, async_client(config, gate.app) as there:
        await here.get("/login?user=alice")
        await there.get("/login?user=alice")
        gate.release.set()
        await here.get("/held/logout_others")
        assert json.loads((await here.get("/me")).content)["user"] == "alice"
        assert json.loads((await there.get("/me")).content)["user"] is None


async def test_rotation_without_interference_keeps_the_user_and_data(config: SessionConfig) -> None:
    gate = AsyncGate()
    gate.release.set()
    async with async_client(config, gate.app) as client:
        await client.get("/login?user=alice")
        await client.get("/set?key=cart&value=3")
        before = client.cookies["session"]
        await client.get("/held/login")
        assert client.cookies["session"] != before
        body = json.loads((await client.get("/me")).content)
        assert body == {"user": "alice", "data": {"cart": "3", "rotated": True}}
    assert len(records(config)) == 1


# -- many writers on one session -------------------------------------------------------------


async def opened_many(config: SessionConfig, count: int) -> tuple[str, list[Any]]:
    gate = AsyncGate()
    async with async_client(config, gate.app) as client:
        await client.get("/login?user=alice")
        header = f"session={client.cookies['session']}"
    opened = await asyncio.gather(
        *(config.run_async(config.core.open(header, time.time())) for _ in range(count))
    )
    return header, list(opened)


async def commit_all(config: SessionConfig, opened: list[Any]) -> list[Any]:
    return list(
        await asyncio.gather(
            *(config.run_async(config.core.commit(o, time.time())) for o in opened)
        )
    )


async def test_32_writers_of_their_own_keys_lose_nothing(config: SessionConfig) -> None:
    header, opened = await opened_many(config, 32)
    for number, each in enumerate(opened):
        each.session[f"k{number}"] = number
    committed = await commit_all(config, opened)
    assert [c.interrupted for c in committed] == [None] * 32
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {f"k{number}": number for number in range(32)}


async def test_32_writers_of_one_key_end_on_one_of_their_values(config: SessionConfig) -> None:
    header, opened = await opened_many(config, 32)
    for number, each in enumerate(opened):
        each.session["color"] = f"c{number}"
        each.session.pop("missing", None)
    committed = await commit_all(config, opened)
    assert [c.interrupted for c in committed] == [None] * 32
    final = await config.run_async(config.core.open(header, time.time()))
    assert final.session["color"] in {f"c{number}" for number in range(32)}


async def test_32_parallel_requests_on_one_session_all_succeed(config: SessionConfig) -> None:
    gate = AsyncGate()
    gate.release.set()
    async with async_client(config, gate.app) as client:
        await client.get("/login?user=alice")
        responses = await asyncio.gather(
            *(client.get(f"/set?key=k{n}&value={n}") for n in range(32))
        )
        assert {r.status_code for r in responses} == {200}
        data = json.loads((await client.get("/me")).content)["data"]
    assert data == {f"k{n}": str(n) for n in range(32)}


async def test_a_removed_key_is_removed_and_a_concurrent_one_kept(config: SessionConfig) -> None:
    header, (first, second) = await opened_many(config, 2)
    first.session["a"] = 1
    await commit_all(config, [first])
    again = await config.run_async(config.core.open(header, time.time()))
    del again.session["a"]
    second.session["b"] = 2  # loaded before "a" existed: must not delete it, nor keep it
    await commit_all(config, [again, second])
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {"b": 2}


async def test_nested_changes_in_place_are_saved(config: SessionConfig) -> None:
    header, (first,) = await opened_many(config, 1)
    first.session["cart"] = {"items": [1]}
    await commit_all(config, [first])
    again = await config.run_async(config.core.open(header, time.time()))
    again.session["cart"]["items"].append(2)
    (committed,) = await commit_all(config, [again])
    assert committed.interrupted is None
    final = await config.run_async(config.core.open(header, time.time()))
    assert final.session["cart"] == {"items": [1, 2]}


async def test_large_integers_and_empty_lists_round_trip(config: SessionConfig) -> None:
    header, (first,) = await opened_many(config, 1)
    first.session.update({"big": 2**63 + 1, "empty": [], "obj": {}})
    await commit_all(config, [first])
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {"big": 2**63 + 1, "empty": [], "obj": {}}


async def test_a_write_past_the_size_limit_saves_nothing(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_session_bytes=600
    )
    header, (first, second) = await opened_many(config, 2)
    first.session["a"] = "x" * 250
    await commit_all(config, [first])
    second.session["b"] = "y" * 250  # fits alone, not beside the concurrent "a"
    second.session["c"] = 1
    with pytest.raises(SessionTooLarge):
        await commit_all(config, [second])
    final = await config.run_async(config.core.open(header, time.time()))
    assert set(final.session) == {"a"}


def test_a_write_that_does_not_grow_the_record_reads_only_what_it_replaces(
    server: RedisServer,
) -> None:
    """Redis's CPU per write: the write script reads the stamp, the user and the fields it
    replaces (HMGET), and the whole record (HGETALL) only to size a write that grows it:
    then at once, for every check."""
    config = sessions(secret_key=SECRET, redis_url=server.url, key_prefix="grow:")
    with wsgi_client(config) as client:
        client.get("/login?user=alice")
        client.get("/set?key=a&value=1")
        with server.client() as admin:
            admin.config_resetstat()
            for value in "2345":
                client.get(f"/set?key=a&value={value}")
            same_size = admin.info("commandstats")
            admin.config_resetstat()
            client.get("/set?key=b&value=1")
            grown = admin.info("commandstats")
        assert client.get("/read").json()["data"] == {"a": "5", "b": "1"}
    config.close()
    # Each request's own read is one HGETALL; the write adds one only when it grows.
    assert same_size["cmdstat_hgetall"]["calls"] == 4
    assert "cmdstat_exists" not in same_size  # a field found proves the record exists
    assert grown["cmdstat_hgetall"]["calls"] == 2
    assert "cmdstat_hmget" not in grown


@pytest.mark.parametrize("expected_to_grow", [False, True])
@pytest.mark.parametrize("padding", [0, 300])
def test_a_record_at_the_limit_takes_a_write_that_does_not_grow_it(
    key_prefix: str, expected_to_grow: bool, padding: int
) -> None:
    """The write script's size check at the limit, with a field set twice and one
    deleted: counted as the record will be stored, whatever the caller expected, and
    with `padding` more fields rewritten at the same size by every write."""
    from redis import Redis

    from session_middleware._protocol.lua_scripts import TOO_LARGE, WRITTEN, WriteCall, WriteReply

    record = f"{key_prefix}{{t}}:s:1"
    padded = {f"d:p{number}": "p" for number in range(padding)}
    stored = {"c": "1", "r": "2", "d:a": "x" * 10, "d:b": "y" * 5, **padded}
    limit = sum(len(name) + len(value) for name, value in stored.items())
    rewritten = [item for name in padded for item in (name, "q")]

    def write(pairs: list[str], deleted: tuple[str, ...] = ()) -> WriteReply:
        call = WriteCall(record=record, mode="none", carried="", wanted="", stamp="",
                         max_bytes=limit, expire="PEXPIRE", expire_at=60_000, score="",
                         handle="1", grows=expected_to_grow, set_pairs=[*rewritten, *pairs],
                         deleted=deleted)  # fmt: skip
        return WriteCall.reply(client.execute_command(*call.command()))

    with Redis.from_url(REDIS_URL, decode_responses=True) as client:
        client.hset(record, mapping=stored)
        assert write(["d:a", "z" * 10]).outcome == WRITTEN
        assert write(["d:a", "z" * 11]) == WriteReply(TOO_LARGE, limit + 1)
        assert write(["d:a", "z" * 11, "d:a", "z" * 9]).outcome == TOO_LARGE
        assert write(["d:a", "z" * 15], ("d:b",)).outcome == WRITTEN
        assert write(["d:c", "1"], ("d:c",)) == WriteReply(TOO_LARGE, limit + 1)
        rest = {name: "q" for name in padded}
        assert client.hgetall(record) == {"c": "1", "r": "2", "d:a": "z" * 15, **rest}


async def test_a_held_write_that_shrinks_what_it_loaded_is_sized_on_what_is_stored(
    key_prefix: str,
) -> None:
    """The request expects no growth (its value is shorter than the one it loaded), but
    another request meanwhile shortened that value and added a key: the write does grow
    the record as stored, past the limit, and is refused; the other request's write stays."""
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_session_bytes=1000
    )
    gate = AsyncGate()
    async with async_client(config, gate.app) as browser:
        await browser.get(f"/set?key=a&value={'x' * 600}")
        held = asyncio.create_task(browser.get(f"/held/write?key=a&value={'y' * 500}"))
        await gate.loaded.wait()
        await browser.get("/set?key=a&value=s")
        await browser.get(f"/set?key=b&value={'z' * 600}")
        gate.release.set()
        with pytest.raises(SessionTooLarge):
            await held
        (record,) = records(config)
        stored = redis_hash(record)
        assert (stored["d:a"], stored["d:b"]) == ('"s"', json.dumps("z" * 600))
    await config.redis.aclose()


async def commit_with(config: SessionConfig, state: Any, after_first: bool) -> Any:
    """Commit `state`, invalidating its user right after the first round trip if asked."""
    from session_middleware._core.steps import Emit, RedisIO
    from session_middleware._transport.round_trip import run_async

    step = config.core.commit(state, time.time())
    request, trips = next(step), 0
    try:
        while True:
            assert isinstance(request, (RedisIO, Emit))
            result = None
            if isinstance(request, RedisIO):
                result = await run_async(config.redis.async_(), request.commands)
                trips += 1
                if trips == 1 and after_first:
                    await config.ainvalidate_user(state.session.user_id)
            request = step.send(result)
    except StopIteration as done:
        return done.value


async def test_a_rotation_across_signing_keys_cannot_undo_an_invalidation(key_prefix: str) -> None:
    from .support import OTHER_SECRET

    old = sessions(secret_key=OTHER_SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    new = sessions(secret_key=[SECRET, OTHER_SECRET], redis_url=REDIS_URL, key_prefix=key_prefix)
    async with async_client(old, AsyncGate().app) as client:
        await client.get("/login?user=alice")
        header = f"session={client.cookies['session']}"
    for invalidated in (True, False):
        state = await new.run_async(new.core.open(header, time.time()))
        assert state.session.user_id == "alice"
        state.session.login("alice")  # rotation, moving to the current key's tag
        # Driven by hand: the invalidation lands after the commit's first round trip.
        committed = await commit_with(new, state, after_first=invalidated)
        if invalidated:
            assert committed.rejected == "epoch" and committed.cookie.value is None
            assert await new.alist_sessions("alice") == []
            async with async_client(old, AsyncGate().app) as client:
                await client.get("/login?user=alice")
                header = f"session={client.cookies['session']}"
        else:
            assert committed.rejected is None and committed.cookie.value is not None
            assert len(await new.alist_sessions("alice")) == 1
            moved = f"session={committed.cookie.value}"
            assert (
                await new.run_async(new.core.open(moved, time.time()))
            ).session.user_id == "alice"
            gone = await new.run_async(new.core.open(header, time.time()))
            assert gone.record is None, "the old key's session was moved, not copied"


async def test_emptying_a_session_keeps_a_concurrent_writers_key(config: SessionConfig) -> None:
    gate = AsyncGate()
    gate.release.set()
    async with async_client(config, gate.app) as client:
        await client.get("/set?key=cart&value=1")
        header = f"session={client.cookies['session']}"
    first = await config.run_async(config.core.open(header, time.time()))
    second = await config.run_async(config.core.open(header, time.time()))
    second.session["csrf"] = "t"
    await config.run_async(config.core.commit(second, time.time()))
    first.session.pop("cart")
    await config.run_async(config.core.commit(first, time.time()))
    final = await config.run_async(config.core.open(header, time.time()))
    assert dict(final.session) == {"csrf": "t"}
