"""The core's specification, with no Redis: given what Redis replies, which commands the
core asks for, which cookie it sends and what it reports.

Each case drives a core step through a scripted driver: every RedisIO the core yields is
recorded and answered from the case's replies; Emit steps are collected as events. Every
case runs with replies as bytes (redis-py's default) and as str (decode_responses=True),
and with and without encryption at rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.exceptions import ResponseError

from session_middleware import SessionTooLarge, sessions
from session_middleware._core.lifecycle import Opened
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.key_layout import new_session_id
from session_middleware._protocol.lua_scripts import (
    EPOCH_MOVED,
    GONE,
    TOO_LARGE,
    WRITTEN,
    BumpIfCall,
    LoginCall,
    ReadCall,
    RotateOutCall,
    WriteCall,
)
from session_middleware._protocol.records import Record, to_json
from session_middleware.config import SessionConfig

from .scripted import Run, drive, name_of

SECRET = "spec-secret-key-0123456789abcdefghijklmnop"
FERNET = "ZmRzYWZkc2FmZHNhZmRzYWZkc2FmZHNhZmRzYWZkc2E="
NOW = time.time()
EPOCH = "e" * 32
OTHER_EPOCH = "f" * 32
READ_PIPELINE = ("HGETALL", "GET")


@pytest.fixture(params=["bytes", "str"])
def encode(request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    """Redis replies as redis-py gives them: bytes, or str with decode_responses."""

    def encoded(value: Any) -> Any:
        if isinstance(value, str) and request.param == "bytes":
            return value.encode()
        if isinstance(value, list):
            return [encoded(item) for item in value]
        return value

    return encoded


@pytest.fixture(params=["plain", "encrypted"])
def config(request: pytest.FixtureRequest) -> SessionConfig:
    options: dict[str, Any] = {"encryption_key": FERNET} if request.param == "encrypted" else {}
    # A URL nothing listens on: building the configuration does no I/O, and neither does
    # the core; the scripted driver answers for Redis.
    return sessions(secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", **options)


@dataclass
class Stored:
    """A session as Redis holds it, and the cookie that names it."""

    header: str
    ref: CookieRef
    fields: list[str]


def stored(
    config: SessionConfig,
    data: dict[str, Any],
    user: str | None = None,
    *,
    epoch: str = EPOCH,
    created: float = NOW - 60,
    refreshed: float = NOW - 60,
    tag: str | None = None,
) -> Stored:
    if tag is None:
        tag = config.keys.user_tag(user) if user is not None else "a" * 24
    ref = CookieRef(tag, new_session_id())
    texts = {key: to_json(value) for key, value in data.items()}
    record = Record(texts, created, created + 3600, refreshed, user, epoch if user else None)
    fields = config.core.fields.fields(record)
    return Stored(f"session={config.core.codec.encode(ref)}", ref, fields)


def opened(
    config: SessionConfig, encode: Callable[[Any], Any], session: Stored, epoch: str | None
) -> Opened:
    run = drive(config.core.open(session.header, NOW), [encode([session.fields, epoch])])
    assert run.steps == [READ_PIPELINE]
    result: Opened = run.result
    return result


def commit(config: SessionConfig, state: Opened, replies: list[Any]) -> Run:
    return drive(config.core.commit(state, NOW), replies)


# -- opening -------------------------------------------------------------------------------


def test_no_cookie_asks_nothing(config: SessionConfig) -> None:
    run = drive(config.core.open(None, NOW), [])
    assert run.steps == [] and run.result.ref is None and len(run.result.session) == 0


@pytest.mark.parametrize("header", ["session=forged", "other=1", "session=" + "a" * 300])
def test_a_cookie_we_did_not_sign_asks_nothing(config: SessionConfig, header: str) -> None:
    assert drive(config.core.open(header, NOW), []).steps == []


def test_an_unknown_id_reads_once_and_is_stale(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    session = stored(config, {"a": 1}, "alice")
    run = drive(config.core.open(session.header, NOW), [encode([[], None])])
    assert run.steps == [READ_PIPELINE] and run.result.cookie_is_stale and run.events == []


def test_a_logged_in_read_is_one_round_trip_with_the_epoch_key(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    session = stored(config, {"cart": [1, 2]}, "alice")
    run = drive(config.core.open(session.header, NOW), [encode([session.fields, EPOCH])])
    record, epoch = run.commands
    assert record == ("HGETALL", config.keys.session_key(session.ref.tag, session.ref.session_id))
    assert epoch == ("GET", config.keys.epoch_key(session.ref.tag)), "the same hash tag"
    assert run.result.session.user_id == "alice" and run.result.session["cart"] == [1, 2]


def test_each_request_reads_the_keys_its_cookie_names(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    """The read is built once per session and found again: by its id and its tag."""
    session = stored(config, {"a": 1}, "alice")
    same_id_other_tag = CookieRef(config.keys.user_tag("bob"), session.ref.session_id)
    for ref in (session.ref, session.ref, same_id_other_tag, session.ref):
        header = f"session={config.core.codec.encode(ref)}"
        run = drive(config.core.open(header, NOW), [encode([[], None])])
        record, epoch = run.commands
        assert record == ("HGETALL", config.keys.session_key(ref.tag, ref.session_id))
        assert epoch == ("GET", config.keys.epoch_key(ref.tag))


def test_an_anonymous_read_has_no_epoch_to_check(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    session = stored(config, {"a": 1})
    state = opened(config, encode, session, None)
    assert state.record is not None and state.rejected is None


@pytest.mark.parametrize("current", [OTHER_EPOCH, None])
def test_another_or_no_epoch_rejects_and_deletes(
    config: SessionConfig, encode: Callable[[Any], Any], current: str | None
) -> None:
    session = stored(config, {"a": 1}, "alice")
    # No epoch at the key: the provider (RedisEpochs beside the sessions) has none.
    replies = [encode([session.fields, current]), [encode([session.fields, current])]]
    run = drive(config.core.open(session.header, NOW), replies)
    assert run.steps == [READ_PIPELINE, ("READ",)], "only the read script may reject"
    assert run.result.rejected == "epoch" and run.result.record is None
    assert [c[0] for c in run.result.cleanup] == ["DEL", "ZREM"]
    assert [(e.kind, e.reason) for e in run.events] == [("rejected", "epoch")]


WRONGTYPE = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


@dataclass(frozen=True)
class ReadRow:
    """One decision of the session read: the pipeline's replies (record, epoch), what READ
    answers after them, if it is asked, and what the request gets."""

    record: str  # "stamped": stamped EPOCH; "restamped": OTHER_EPOCH; "anonymous"; or a reply
    epoch: Any
    then: tuple[str, Any] | None  # READ's reply (record, epoch), if asked
    outcome: str  # "alive", "stale", "epoch" (rejected) or "corrupt"


READ_ROWS = {
    "match": ReadRow("stamped", EPOCH, None, "alive"),
    "anonymous, no epoch": ReadRow("anonymous", None, None, "alive"),
    "record empty": ReadRow("empty", None, None, "stale"),
    "mismatch, the script accepts": ReadRow(
        "stamped", OTHER_EPOCH, ("restamped", OTHER_EPOCH), "alive"
    ),
    "mismatch, the script rejects": ReadRow(
        "stamped", OTHER_EPOCH, ("stamped", OTHER_EPOCH), "epoch"
    ),
    "epoch missing, the script rejects": ReadRow("stamped", None, ("stamped", None), "epoch"),
    "epoch missing, the script accepts": ReadRow(
        "stamped", None, ("restamped", OTHER_EPOCH), "alive"
    ),
    "record WRONGTYPE": ReadRow("wrongtype", EPOCH, ("WRONGTYPE", EPOCH), "corrupt"),
    "epoch WRONGTYPE": ReadRow("stamped", "wrongtype", ("stamped", None), "epoch"),
}


@pytest.mark.parametrize("row", READ_ROWS.values(), ids=READ_ROWS.keys())
def test_the_session_read_decides(
    config: SessionConfig, encode: Callable[[Any], Any], row: ReadRow
) -> None:
    """One pipeline (HGETALL, GET); READ, atomic, is asked only when the pair is not a
    record and the epoch it is stamped with, and only its answer rejects for the epoch."""
    stamped = stored(config, {"a": 1}, "alice", epoch=EPOCH)
    restamped = Stored(
        stamped.header, stamped.ref, stored(config, {"a": 1}, "alice", epoch=OTHER_EPOCH).fields
    )
    records: dict[str, Any] = {
        "stamped": stamped.fields,
        "restamped": restamped.fields,
        "anonymous": stored(config, {"a": 1}).fields,
        "empty": [],
        "wrongtype": WRONGTYPE,
        "WRONGTYPE": "WRONGTYPE",  # READ's own answer for a key that is not a hash
    }

    def reply(name: str, epoch: Any) -> list[Any]:
        return [encode(records[name]), WRONGTYPE if epoch == "wrongtype" else encode(epoch)]

    replies: list[Any] = [reply(row.record, row.epoch)]
    if row.then is not None:
        replies.append([reply(*row.then)])
    run = drive(config.core.open(stamped.header, NOW), replies)
    assert run.steps == [READ_PIPELINE] + ([("READ",)] if row.then else [])
    if row.then is not None:
        (read,) = run.commands[2:]
        assert ReadCall.of(read).record == run.commands[0][1]
        assert ReadCall.of(read).epoch_key == run.commands[1][1]
    opened: Opened = run.result
    outcome = "alive" if opened.record is not None else "stale"
    if run.events:
        outcome = str(run.events[0].reason)
    assert outcome == row.outcome
    assert (opened.rejected == "epoch") == (row.outcome == "epoch")
    if row.outcome == "alive" and row.then is not None:
        assert opened.record is not None and opened.record.epoch == OTHER_EPOCH


@pytest.mark.parametrize(
    "fields",
    [
        "WRONGTYPE",
        ["c", "1"],
        ["c", "x", "x", "1", "r", "1"],
        ["c", "1", "x", "9e99", "r", "1"],
        ["c", "1", "x", "2", "r", "1", "u", "7"],
        ["c", "1", "x", "2", "r", "1", "m", "[]"],
    ],
)
def test_a_record_we_could_not_have_written_is_dropped(
    config: SessionConfig, encode: Callable[[Any], Any], fields: Any
) -> None:
    session = stored(config, {}, None)
    run = drive(config.core.open(session.header, NOW), [encode([fields, None])])
    assert run.result.record is None and run.result.cookie_is_stale
    assert [c[0] for c in run.result.cleanup] == ["DEL", "ZREM"]
    assert [(e.kind, e.reason) for e in run.events] == [("rejected", "corrupt")]


@pytest.mark.parametrize("text", ["{not json", '"\\ud800"', "[" * 70 + "]" * 70, "NaN"])
def test_a_value_we_could_not_have_written_reads_as_none(
    config: SessionConfig,
    encode: Callable[[Any], Any],
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The data stays JSON text until read: a value this package could not have written
    reads as None, with a warning, and the session's next write stores None over it; the
    session and its other values are kept."""
    session = stored(config, {"a": 1, "b": 2}, "alice")
    session.fields += ["d:k", config.core.fields.seal(text, "d:k")]
    run = drive(config.core.open(session.header, NOW), [encode([session.fields, EPOCH])])
    state = run.result
    assert state.record is not None and run.events == [] and not state.cookie_is_stale
    assert state.session.user_id == "alice" and "k" in state.session
    with caplog.at_level(logging.WARNING, logger="session_middleware"):
        assert state.session.get("k") is None
    assert "could not be read" in caplog.text and text not in caplog.text
    assert dict(state.session) == {"a": 1, "b": 2, "k": None}
    state.session["a"] = 3
    written = commit(config, state, [[WRITTEN]])
    assert sorted(changed_fields(write_of(written))[0]) == ["d:a", "d:k", "r"]


def test_values_stay_text_until_read(config: SessionConfig, encode: Callable[[Any], Any]) -> None:
    """A request that reads one key of a large session decodes that key alone; a rotation
    carries the values never read as they were stored."""
    big = [{"id": n, "price": 9.5} for n in range(500)]
    session = stored(config, {"theme": "dark", "cart": big}, "alice")
    state = opened(config, encode, session, EPOCH)
    assert state.session["theme"] == "dark"
    assert dict.__getitem__(state.session, "cart") is not big
    assert repr(dict.__getitem__(state.session, "cart")).startswith("<a session value not")
    assert commit(config, state, []).commands == [], "nothing to write"
    state = opened(config, encode, session, EPOCH)
    state.session.login("alice")
    (login,) = commit(config, state, [[[EPOCH, ""]]]).commands
    fields = dict(zip(*[iter(LoginCall.of(login).fields)] * 2, strict=True))
    assert config.core.fields.open(fields["d:cart"], "d:cart") == to_json(big)


def test_a_metadata_field_of_a_later_release_is_kept_and_ignored(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    later = stored(config, {"a": 1}, "alice")
    later.fields += ["z", '{"later":true}']
    run = drive(config.core.open(later.header, NOW), [encode([later.fields, EPOCH])])
    state = run.result
    assert state.record is not None and run.events == [] and not state.cookie_is_stale
    assert state.session.user_id == "alice" and dict(state.session) == {"a": 1}
    state.session["a"] = 2
    written = commit(config, state, [[WRITTEN]])
    assert changed_fields(write_of(written)) == (["r", "d:a"], []), "the field is left alone"
    state = drive(config.core.open(later.header, NOW), [encode([later.fields, EPOCH])]).result
    state.session.login("alice")
    (login,) = commit(config, state, [[[EPOCH, ""]]]).commands
    fields = dict(zip(*[iter(LoginCall.of(login).fields)] * 2, strict=True))
    assert fields["z"] == '{"later":true}', "a rotation carries it"


def test_a_record_under_another_users_tag_is_dropped(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    bob = stored(config, {"a": 1}, "bob")
    alice = stored(config, {}, "alice")
    header = f"session={config.core.codec.encode(CookieRef(alice.ref.tag, bob.ref.session_id))}"
    run = drive(config.core.open(header, NOW), [encode([bob.fields, EPOCH])])
    assert run.result.record is None and run.events[0].reason == "corrupt"


@pytest.mark.parametrize("age", ["absolute", "idle"])
def test_an_expired_record_is_stale_and_deleted(encode: Callable[[Any], Any], age: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", max_age=3600, idle_timeout=600
    )
    created = NOW - 4000 if age == "absolute" else NOW - 700
    session = stored(config, {"a": 1}, "alice", created=created, refreshed=created)
    run = drive(config.core.open(session.header, NOW), [encode([session.fields, EPOCH])])
    assert run.result.record is None and run.events[0].reason == "expired"


# -- committing ----------------------------------------------------------------------------


def test_a_read_only_request_writes_nothing(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": [1]}, "alice"), EPOCH)
    assert state.session["a"] == [1]
    run = commit(config, state, [])
    assert run.steps == [] and run.result.cookie is None and run.result.depends_on_session


def test_an_untouched_session_does_not_vary(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    run = commit(config, state, [])
    assert run.steps == [] and not run.result.depends_on_session


def test_a_first_value_creates_a_session_and_issues_a_cookie(config: SessionConfig) -> None:
    state = drive(config.core.open(None, NOW), []).result
    state.session["cart"] = [1]
    run = commit(config, state, [[1]])
    assert run.steps == [("CREATE",)] and run.result.cookie.value is not None
    assert "httponly" in run.result.set_cookie


def write_of(run: Run) -> WriteCall:
    (write,) = [c for c in run.commands if name_of(c) == "WRITE"]
    return WriteCall.of(write)


def changed_fields(write: WriteCall) -> tuple[list[str], list[str]]:
    return list(write.set_pairs[0::2]), list(write.deleted)


def test_a_change_writes_only_that_key(config: SessionConfig, encode: Callable[[Any], Any]) -> None:
    state = opened(config, encode, stored(config, {"a": 1, "b": 2}, "alice"), EPOCH)
    state.session["b"] = 3
    run = commit(config, state, [[WRITTEN]])
    assert run.steps == [("WRITE",)]
    assert changed_fields(write_of(run)) == (["r", "d:b"], [])
    assert run.result.cookie is not None, "the cookie is sent again on a change"


def test_a_deletion_deletes_only_that_field(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1, "b": 2}, "alice"), EPOCH)
    del state.session["a"]
    run = commit(config, state, [[WRITTEN]])
    assert changed_fields(write_of(run)) == (["r"], ["d:a"])


def test_a_nested_change_in_place_is_written(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"cart": [1], "x": 0}, "alice"), EPOCH)
    state.session["cart"].append(2)
    run = commit(config, state, [[WRITTEN]])
    assert changed_fields(write_of(run)) == (["r", "d:cart"], [])


def test_a_write_carries_the_loaded_epoch_as_its_guard(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session["a"] = 2
    write = write_of(commit(config, state, [[WRITTEN]]))
    assert write.epoch_key is not None
    assert (write.mode, write.carried, write.wanted, write.stamp) == ("redis", EPOCH, EPOCH, "")


def test_an_anonymous_write_has_no_epoch_guard(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}), None)
    state.session["a"] = 2
    write = write_of(commit(config, state, [[WRITTEN]]))
    assert write.epoch_key is None and (write.mode, write.carried) == ("none", "")


def test_a_refresh_due_writes_only_the_refresh_time(encode: Callable[[Any], Any]) -> None:
    config = sessions(secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", refresh_interval=30)
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    run = commit(config, state, [[WRITTEN]])
    assert changed_fields(write_of(run)) == (["r"], []) and run.result.cookie is None


@pytest.mark.parametrize(
    ("reply", "interrupted", "events"),
    [(GONE, "gone", []), (EPOCH_MOVED, "epoch", [("rejected", "epoch")])],
)
def test_a_refused_write_changes_no_cookie(
    config: SessionConfig,
    encode: Callable[[Any], Any],
    reply: int,
    interrupted: str,
    events: list[tuple[str, str]],
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session["a"] = 2
    run = commit(config, state, [[reply]])
    assert run.result.interrupted == interrupted and run.result.cookie is None
    assert [(e.kind, e.reason) for e in run.events] == events


def test_a_write_over_the_limit_raises(config: SessionConfig, encode: Callable[[Any], Any]) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session["a"] = 2
    with pytest.raises(SessionTooLarge) as raised:
        commit(config, state, [[[TOO_LARGE, 70_000]]])
    assert raised.value.size == 70_000


def test_emptying_a_session_deletes_its_keys_not_the_record(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    """A concurrent writer's keys survive: only the keys this request loaded are removed."""
    state = opened(config, encode, stored(config, {"a": 1}), None)
    state.session.clear()
    run = commit(config, state, [[WRITTEN]])
    assert changed_fields(write_of(run)) == (["r"], ["d:a"])


def test_logout_deletes_the_record_and_its_index_entry(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session.logout()
    run = commit(config, state, [[1, 1]])
    assert run.steps == [("DEL", "ZREM")] and run.result.cookie.value is None
    assert [(e.kind, e.user_id) for e in run.events] == [("logout", "alice")]


def test_a_login_reads_or_creates_the_epoch_in_its_script(config: SessionConfig) -> None:
    state = drive(config.core.open(None, NOW), []).result
    state.session.login("alice")
    run = commit(config, state, [[[EPOCH, ""]]])
    login = LoginCall.of(run.commands[0])
    assert login.old_record is None and login.mode == "ensure"
    assert run.result.cookie.value is not None
    assert [(e.kind, e.user_id) for e in run.events] == [("login", "alice")]


def test_a_login_from_another_users_session_forgets_it(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "bob"), EPOCH)
    state.session.login("alice")
    run = commit(config, state, [[1, 1, [EPOCH, ""]]])
    assert run.steps == [("DEL", "ZREM", "LOGIN")] and dict(state.session) == {}


def test_a_rotation_expects_the_carried_epoch_and_the_old_record(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    session = stored(config, {"a": 1}, "alice")
    state = opened(config, encode, session, EPOCH)
    state.session.login("alice")
    run = commit(config, state, [[[EPOCH, ""]]])
    login = LoginCall.of(run.commands[0])
    old_record = config.keys.session_key(session.ref.tag, session.ref.session_id)
    assert login.old_record == old_record, "a key of the script: checked and deleted there"
    assert (login.mode, login.epoch) == ("expect", EPOCH)
    assert [e.kind for e in run.events] == ["rotation"]


@pytest.mark.parametrize("moved", [True, False])
def test_a_rotation_under_an_older_keys_tag_moves_the_session_out_first(
    encode: Callable[[Any], Any], moved: bool
) -> None:
    config = sessions(secret_key=[SECRET, "an-older-key-0123456789abcdefghijklmnopq"],
                      redis_url="redis://127.0.0.1:1/0")  # fmt: skip
    older_tag = config.keys.user_tags("alice")[1]
    state = opened(config, encode, stored(config, {"a": 1}, "alice", tag=older_tag), EPOCH)
    state.session.login("alice")
    replies: list[Any] = [[1 if moved else 0, encode(EPOCH)]]
    run = commit(config, state, [*replies, [[EPOCH, ""]]] if moved else replies)
    move_out = RotateOutCall.of(run.commands[0])
    assert move_out.carried == EPOCH, "only while its epoch there is the one it carries"
    if not moved:
        assert run.steps == [("ROTATE_OUT", "ENSURE_EPOCH")], "ended in flight: no login"
        assert run.result.rejected == "epoch"
        return
    assert run.steps == [("ROTATE_OUT", "ENSURE_EPOCH"), ("LOGIN",)]
    login = LoginCall.of(run.commands[-1])
    assert (login.mode, login.epoch, login.old_record) == ("expect", EPOCH, None)
    assert login.record.startswith(config.keys.record_key_base(config.keys.user_tag("alice")))
    assert [e.kind for e in run.events] == ["rotation"]


def test_a_refused_rotation_signs_the_request_out(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session.login("alice")
    run = commit(config, state, [[None]])
    assert run.result.rejected == "epoch" and run.result.cookie.value is None
    assert [(e.kind, e.reason) for e in run.events] == [("rejected", "epoch")]


def test_logout_others_is_a_durable_compare_and_set_then_a_restamp(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session.logout_others()
    run = commit(config, state, [[1], [WRITTEN]])
    assert run.steps == [("BUMP_IF",), ("WRITE",)]
    assert run.waits == [1, 0], "the bump waits for a replica, as invalidate_user does"
    bump, write = BumpIfCall.of(run.commands[0]), write_of(run)
    assert bump.session == write.record, "the compare-and-set checks this session too"
    assert bump.expected == bump.stamp == EPOCH, "from the epoch the session carried"
    assert bump.restamp == "1", "the session takes the new epoch in the bump's own step"
    assert (write.carried, write.wanted, write.stamp) == (EPOCH, bump.epoch, bump.epoch)
    assert [e.kind for e in run.events] == ["logout_others"]


def test_a_password_change_re_stamps_its_session_in_the_bump(config: SessionConfig) -> None:
    session = stored(config, {"a": 1}, "alice")
    run = drive(config.core.bump_from_request("alice", session.ref, EPOCH, EPOCH), [[1]])
    bump = BumpIfCall.of(run.commands[0])
    assert (bump.expected, bump.stamp, bump.restamp) == (EPOCH, EPOCH, "1")
    assert run.result == bump.epoch


def test_logout_others_after_a_password_change_checks_the_stamp_the_bump_gave(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.own_epoch = OTHER_EPOCH  # this request changed the password: the record is stamped so
    state.session.logout_others()
    run = commit(config, state, [[1], [WRITTEN]])
    bump = BumpIfCall.of(run.commands[0])
    assert (bump.expected, bump.stamp) == (OTHER_EPOCH, OTHER_EPOCH)
    write = write_of(run)
    assert (write.carried, write.wanted, write.stamp) == (EPOCH, bump.epoch, bump.epoch)


@pytest.mark.parametrize("failure", ["not replicated", "unavailable"])
def test_logout_others_that_cannot_be_made_durable_ends_the_session(
    config: SessionConfig, encode: Callable[[Any], Any], failure: str
) -> None:
    from session_middleware import NotReplicated, StoreUnavailable

    error = NotReplicated(0, 1) if failure == "not replicated" else StoreUnavailable("down")
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session.logout_others()
    run = commit(config, state, [error, [1, 1]])
    assert run.steps == [("BUMP_IF",), ("DEL", "ZREM")], "the session is ended, not re-stamped"
    assert run.result.rejected == "epoch" and run.result.cookie.value is None
    assert [(e.kind, e.reason) for e in run.events] == [("rejected", "unreplicated")]


def test_a_login_that_logs_the_others_out_bumps_durably_first(config: SessionConfig) -> None:
    state = drive(config.core.open(None, NOW), []).result
    state.session.login("alice")
    state.session.logout_others()
    run = commit(config, state, [["OK"], [["n" * 32, ""]]])
    assert run.steps == [("SET",), ("LOGIN",)] and run.waits == [1, 0]
    login = LoginCall.of(run.commands[-1])
    assert (login.mode, login.epoch) == ("ensure", run.commands[0][2])


def test_a_rotation_that_logs_the_others_out_is_a_compare_and_set(
    config: SessionConfig, encode: Callable[[Any], Any]
) -> None:
    state = opened(config, encode, stored(config, {"a": 1}, "alice"), EPOCH)
    state.session.login("alice")
    state.session.logout_others()
    run = commit(config, state, [[0]])
    assert run.steps == [("BUMP_IF",)] and BumpIfCall.of(run.commands[0]).expected == EPOCH
    assert run.result.rejected == "epoch", "the epoch had moved: refused, nothing written"


def test_the_cap_reports_the_sessions_it_ended(config: SessionConfig) -> None:
    state = drive(config.core.open(None, NOW), []).result
    state.session.login("alice")
    run = commit(config, state, [[[EPOCH, "", "h1" * 16, "h2" * 16]]])
    assert run.steps == [("LOGIN",)], "deleted by the script: nothing more to send"
    assert [e.kind for e in run.events] == ["login", "evicted", "evicted"]
    assert {e.handle for e in run.events[1:]} == {"h1" * 16, "h2" * 16}


def test_a_new_id_already_in_use_is_never_issued(config: SessionConfig) -> None:
    from session_middleware import StoreUnavailable

    state = drive(config.core.open(None, NOW), []).result
    state.session["cart"] = [1]
    with pytest.raises(StoreUnavailable):
        commit(config, state, [[0]])  # CREATE wrote nothing: the key existed


# -- whether a record is alive: one check for requests and user operations -----------------


@pytest.mark.parametrize(
    "user, tag_of, age, epoch, cached, dead",
    [
        ("alice", "alice", 60, EPOCH, EPOCH, None),
        (None, "anonymous", 60, None, None, None),
        ("alice", "bob", 60, EPOCH, EPOCH, "foreign"),
        ("alice", "alice", 4000, EPOCH, EPOCH, "expired"),
        (None, "anonymous", 4000, None, None, "expired"),
        ("alice", "alice", 60, EPOCH, OTHER_EPOCH, "epoch"),
        ("alice", "alice", 60, None, EPOCH, "epoch"),
    ],
)
def test_liveness(
    config: SessionConfig,
    user: str | None,
    tag_of: str,
    age: int,
    epoch: str | None,
    cached: str | None,
    dead: str | None,
) -> None:
    record = Record({}, NOW - age, NOW - age + 3600, NOW - age, user, epoch)
    tag = "a" * 24 if tag_of == "anonymous" else config.keys.user_tag(tag_of)
    run = drive(config.core.liveness(record, tag, cached, NOW), [])
    assert run.result[0] == dead and run.steps == []


def test_liveness_asks_the_provider_only_on_a_miss(config: SessionConfig) -> None:
    record = Record({}, NOW, NOW + 3600, NOW, "alice", EPOCH)
    tag = config.keys.user_tag("alice")
    # RedisEpochs beside the sessions: nothing cached means the user has no epoch.
    assert drive(config.core.liveness(record, tag, None, NOW), []).result == ("epoch", None)
    assert drive(config.core.liveness(record, tag, EPOCH, NOW), []).result == (None, EPOCH)
