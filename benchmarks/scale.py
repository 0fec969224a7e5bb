"""Invalidating one user among 10 to 10^6 sessions: the epoch against what the Redis
community usually suggests (SCAN MATCH + DEL; a per-user SET of session ids).

The keyspace is filled with pipelined writes in session_middleware's own layout (record
HASH, epoch, per-user index), plus the per-user SETs the SET method needs. The user whose sessions
are invalidated logs in for real through the middleware, so the check afterwards uses their
real cookies.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis
import redis.asyncio

from session_middleware import get_session, sessions
from session_middleware._core.epoch_provider import new_epoch
from session_middleware._protocol.key_layout import session_handle

from .counting import Counter, counted_client
from .driver import Request
from .settings import REDIS_URL, SECRET, SESSION_LIFETIME, Mode, delete_prefix
from .variants import COOKIE

SESSIONS_PER_USER = 5
TARGET = "target-user"
BATCH = 5_000
SCAN_COUNT = 1_000
TTL_MS = SESSION_LIFETIME * 1000

METHODS = {
    "reference": "reference: one bare SET through the same client",
    "epoch": "session_middleware: ainvalidate_user (new epoch)",
    "epoch+delete": "session_middleware: ainvalidate_user(delete=True) (epoch + index)",
    "scan": f"SCAN MATCH (COUNT {SCAN_COUNT}) + DEL",
    "set": "per-user SET: SMEMBERS + DEL",
}


@dataclass
class SizeResult:
    sessions: int
    users: int
    dbsize: int
    fill_seconds: float
    memory: dict[str, int]  # component -> bytes of used_memory its bulk write added
    keys: dict[str, int]  # component -> keys written
    sampled: dict[str, float]  # component -> mean MEMORY USAGE of a sample of its keys
    times_us: dict[str, list[float]] = field(default_factory=dict)
    round_trips: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    rejected_after_epoch: bool = False


async def _user_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /<user> logs that user in; GET / answers who the session belongs to."""
    session = get_session(scope)
    if scope["method"] == "POST":
        session.login(scope["path"].strip("/"))
    body = f"{session.user_id}|{scope.get('session_rejected')}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _handle(prefix: str, user: int, number: int) -> str:
    return hashlib.blake2b(f"{prefix}{user}:{number}".encode(), digest_size=16).hexdigest()


class Keyspace:
    """One size's keys: session_middleware's layout under its own prefix."""

    def __init__(self, prefix: str, size: int, client: redis.asyncio.Redis) -> None:
        self.prefix = prefix
        self.config = sessions(
            secret_key=SECRET,
            redis=client,
            key_prefix=f"{prefix}sm:",
            session_cookie=COOKIE,
            max_age=SESSION_LIFETIME,
        )
        self.app = self.config(_user_app)
        self.keys = self.config.keys
        self.size = size
        self.users = max(2, size // SESSIONS_PER_USER)  # user 0 is TARGET, logged in for real
        self.target_tag = self.keys.user_tag(TARGET)

    def set_key(self, tag: str) -> str:
        return f"{self.prefix}set:{{{tag}}}"

    def background(self) -> Iterator[tuple[str, str, list[str]]]:
        """(user id, tag, record keys) of every bulk-written user."""
        per_user = SESSIONS_PER_USER
        left = self.size - per_user
        for user in range(1, self.users):
            count = min(per_user, left - (user - 1) * per_user)
            if count <= 0:
                return
            user_id = f"user-{user}"
            tag = self.keys.user_tag(user_id)
            handles = [_handle(self.prefix, user, n) for n in range(count)]
            yield user_id, tag, handles

    async def log_in_target(self) -> list[str]:
        """SESSIONS_PER_USER real logins of TARGET; their Cookie headers."""
        cookies = []
        for _ in range(SESSIONS_PER_USER):
            response = await Request("POST", f"/{TARGET}").fetch(self.app)
            value = response.set_cookie(COOKIE)
            if response.status != 200 or not value:
                raise RuntimeError(f"login of {TARGET} failed: {response.status}")
            cookies.append(f"{COOKIE}={value}")
        return cookies

    async def whose(self, cookie: str) -> str:
        return (await Request("GET", "/", cookie).fetch(self.app)).body.decode()

    def handle_of(self, cookie: str) -> str:
        ref = self.config.core.codec.find(cookie)
        assert ref is not None
        return session_handle(ref.session_id)

    def record_key_of(self, cookie: str) -> str:
        return self.keys.record_key(self.target_tag, self.handle_of(cookie))


def _text(value: bytes | str | None) -> str:
    if value is None:
        raise RuntimeError("a key the set-up just wrote is missing")
    return value.decode() if isinstance(value, bytes) else value


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _pipelined(client: redis.Redis, commands: Iterator[tuple[Any, ...]]) -> None:
    pipe: Any = client.pipeline(transaction=False)
    pending = 0
    for command in commands:
        pipe.execute_command(*command)
        pending += 1
        if pending >= BATCH:
            pipe.execute()
            pending = 0
    if pending:
        pipe.execute()


class Filled(NamedTuple):
    memory: dict[str, int]
    keys: dict[str, int]
    sampled: dict[str, float]
    seconds: float


SAMPLE = 300
CREATING = frozenset({"SET", "HSET", "ZADD", "SADD"})


@dataclass
class Written:
    """How many keys a bulk write created, and the first SAMPLE of them."""

    count: int = 0
    sample: list[str] = field(default_factory=list)


def _noted(commands: Iterator[tuple[Any, ...]], written: Written) -> Iterator[tuple[Any, ...]]:
    """The commands, unchanged, noting in `written` the keys they create."""
    for command in commands:
        if command[0] in CREATING:
            written.count += 1
            if len(written.sample) < SAMPLE:
                written.sample.append(command[1])
        yield command


def fill(space: Keyspace, template: dict[str, str], target_epoch: str) -> Filled:
    """Bulk-write every background session; per component: the used_memory it added, its
    keys, and the mean MEMORY USAGE of a sample of them."""
    client = redis.Redis.from_url(REDIS_URL)
    keys, memory, counts, sampled = space.keys, {}, {}, {}
    expires = int(time.time() * 1000) + TTL_MS
    started = time.perf_counter()
    try:
        epochs: dict[str, str] = {}

        def records() -> Iterator[tuple[Any, ...]]:  # the same fields as a real login's
            for user_id, tag, handles in space.background():
                epoch = epochs.setdefault(tag, new_epoch())
                fields = [
                    part.replace(target_epoch, epoch).replace(TARGET, user_id)
                    for pair in template.items()
                    for part in pair
                ]
                for handle in handles:
                    yield ("HSET", keys.record_key(tag, handle), *fields)
                    yield ("PEXPIRE", keys.record_key(tag, handle), TTL_MS)

        def epoch_keys() -> Iterator[tuple[Any, ...]]:
            for _, tag, _ in space.background():
                yield ("SET", keys.epoch_key(tag), epochs[tag], "PX", TTL_MS + 60_000)

        def indexes() -> Iterator[tuple[Any, ...]]:
            for _, tag, handles in space.background():
                members = [part for handle in handles for part in (expires, handle)]
                yield ("ZADD", keys.index_key(tag), *members)
                yield ("PEXPIRE", keys.index_key(tag), TTL_MS)

        def sets() -> Iterator[tuple[Any, ...]]:
            for _, tag, handles in space.background():
                yield ("SADD", space.set_key(tag), *handles)
                yield ("PEXPIRE", space.set_key(tag), TTL_MS)

        for name, commands in (
            ("session records", records),
            ("user epochs", epoch_keys),
            ("per-user index (ours: sorted set)", indexes),
            ("per-user SET of ids (the SET method)", sets),
        ):
            before = _used_memory(client)
            written = Written()
            _pipelined(client, _noted(commands(), written))
            memory[name] = _used_memory(client) - before
            counts[name] = written.count
            sizes = [client.memory_usage(key, samples=0) or 0 for key in written.sample]
            sampled[name] = sum(sizes) / len(sizes) if sizes else 0.0
    finally:
        client.close()
    return Filled(memory, counts, sampled, time.perf_counter() - started)


async def _scan_delete(client: redis.asyncio.Redis, pattern: str) -> int:
    """SCAN MATCH the whole keyspace, then DEL what matched; the keys deleted."""
    found: list[Any] = []
    cursor = 0
    while True:
        cursor, batch = await client.scan(cursor, match=pattern, count=SCAN_COUNT)
        found.extend(batch)
        if cursor == 0:
            break
    return int(await client.delete(*found)) if found else 0


async def _set_delete(
    client: redis.asyncio.Redis, set_key: str, record_key: Callable[[str], str]
) -> int:
    """SMEMBERS the user's SET of ids, then DEL their records and the SET; the keys deleted."""
    members = await client.smembers(set_key)
    if not members:
        return 0
    doomed = [record_key(_text(member)) for member in members]
    return int(await client.delete(*doomed, set_key))


class Sized:
    """One size's keyspace, filled, with what the timed methods need."""

    def __init__(self, space: Keyspace, result: SizeResult) -> None:
        self.space = space
        self.result = result
        self.pattern = space.keys.record_key_base(space.target_tag) + "*"
        self.set_key = space.set_key(space.target_tag)

    def record(self, handle: str) -> str:
        return self.space.keys.record_key(self.space.target_tag, handle)


async def _filled(
    size: int, prefix: str, client: redis.asyncio.Redis, log: Callable[[str], None]
) -> Sized:
    space = Keyspace(f"{prefix}scale{size}:", size, client)
    cookies = await space.log_in_target()
    stored = await client.hgetall(space.record_key_of(cookies[0]))  # a record is a HASH
    if not stored:
        raise RuntimeError("the record the set-up just wrote is missing")
    template = {_text(name): _text(value) for name, value in stored.items()}
    target_epoch = _text(await client.get(space.keys.epoch_key(space.target_tag)))
    filled = fill(space, template, target_epoch)
    dbsize = await client.dbsize()
    result = SizeResult(
        size, space.users, dbsize, filled.seconds, filled.memory, filled.keys, filled.sampled
    )
    log(f"  {size} sessions written in {filled.seconds:.1f} s; DBSIZE {dbsize}")
    return Sized(space, result)


async def _invalidate(
    sized: Sized, method: str, client: redis.asyncio.Redis, counter: Counter, check: bool
) -> None:
    """Log the user in again, then time one invalidation by `method`; round trips counted."""
    space, result = sized.space, sized.result
    cookies = await space.log_in_target()
    if method == "set":
        await client.sadd(sized.set_key, *(space.handle_of(c) for c in cookies))
    deleted: Any = 0
    counter.reset()
    start = time.perf_counter()
    if method == "epoch":
        await space.config.ainvalidate_user(TARGET)
    elif method == "epoch+delete":
        await space.config.ainvalidate_user(TARGET, delete=True)
    elif method == "scan":
        deleted = await _scan_delete(client, sized.pattern)
    elif method == "set":
        deleted = await _set_delete(client, sized.set_key, sized.record)
    else:
        await client.set(f"{space.prefix}reference", "x", px=TTL_MS)
    elapsed = (time.perf_counter() - start) * 1e6
    result.times_us.setdefault(method, []).append(elapsed)
    result.round_trips[method] = counter.round_trips
    if method == "epoch+delete":
        left = [await client.exists(space.record_key_of(c)) for c in cookies]
        if any(left):
            raise RuntimeError("invalidate_user(delete=True) left records behind")
        deleted = len(cookies)
    if method in ("scan", "set") and not deleted:
        raise RuntimeError(f"{method} deleted none of the user's records: the layout moved?")
    result.deleted[method] = int(deleted)
    if method == "epoch" and check:
        answers = [await space.whose(c) for c in cookies]
        result.rejected_after_epoch = all(a == "None|epoch" for a in answers)


async def measure(mode: Mode, prefix: str, log: Callable[[str], None]) -> list[SizeResult]:
    """Size after size: fill, time every method in turn in each repeat (a bare SET among
    them, the yardstick against the machine's noise of the moment), delete."""
    counter = Counter()
    client = await counted_client(counter)
    results: list[SizeResult] = []
    try:
        for size in mode.scale_sizes:
            sized: Sized | None = None
            try:
                sized = await _filled(size, prefix, client, log)
                for repeat in range(mode.scale_repeats):
                    for method in METHODS:
                        await _invalidate(sized, method, client, counter, check=repeat == 0)
                results.append(sized.result)
            finally:
                deleted = delete_prefix(f"{prefix}scale{size}:")
                log(f"  {size}: timed; deleted {deleted} keys")
        return results
    finally:
        await client.aclose()
