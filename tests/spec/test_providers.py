"""The epoch providers' specification, with no Redis and no database: which round trips
and transactions each provider step asks for, and what it makes of the replies.

A provider step runs on the same scripted runner as the core's (see scripted.py): each
RedisIO and SqlIO is recorded and answered from the case's replies.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from session_middleware import RedisEpochs, StoreUnavailable, sessions
from session_middleware._core.lifecycle import Opened
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.key_layout import new_session_id
from session_middleware._protocol.lua_scripts import BumpIfCall, CopyAndRestampCall, LoginCall
from session_middleware._protocol.records import Record
from session_middleware.config import SessionConfig
from session_middleware.session import Session

from .scripted import drive

pytest.importorskip("sqlalchemy")

from session_middleware.epochs._sql_cache import FillCall
from session_middleware.epochs.sql import SQLEpochs

SECRETS = ["spec-secret-key-0123456789abcdefghijklmnop", "older-secret-key-0123456789abcdefghijkl"]
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens: building a configuration does no I/O
EPOCH, OTHER, THIRD = "e" * 32, "f" * 32, "a" * 32


def configured(epochs: Any = None, **options: Any) -> SessionConfig:
    return sessions(secret_key=SECRETS, redis_url=NOWHERE, epochs=epochs, **options)


def sql_epochs(cache_ttl: float = 300.0) -> SQLEpochs:
    return SQLEpochs.managed("sqlite://", cache_ttl=cache_ttl)


# -- RedisEpochs beside the sessions --------------------------------------------------------


def test_colocated_resolve_takes_the_cached_value_and_asks_nothing() -> None:
    epochs = configured().epochs
    assert drive(epochs.resolve("alice", "t", EPOCH), []).result == EPOCH
    assert drive(epochs.resolve("alice", "t", None), []).result is None
    assert drive(epochs.login_epoch("alice"), []).result is None  # the login script ensures it


def test_colocated_bump_sets_every_tag_in_one_round_trip() -> None:
    config = configured(invalidate_wait_replicas=2, invalidate_wait_timeout_ms=500)
    run = drive(config.epochs.bump_epoch("alice"), [["OK", "OK"]])
    assert run.steps == [("SET", "SET")]
    assert [c[1] for c in run.commands] == [
        config.keys.epoch_key(tag) for tag in config.keys.user_tags("alice")
    ]
    assert all(c[2] == run.result and c[3] == "PX" for c in run.commands)
    assert run.waits == [2], "the bump waits for the replicas the settings ask for"


def test_colocated_bump_if_refused_writes_nothing_else() -> None:
    config = configured()
    tag = config.keys.user_tag("alice")
    run = drive(config.epochs.bump_if("alice", tag, EPOCH), [[0]])
    assert run.steps == [("BUMP_IF",)] and run.result is None
    bump = BumpIfCall.of(run.commands[0])
    assert (bump.epoch_key, bump.expected) == (config.keys.epoch_key(tag), EPOCH)


def test_colocated_bump_if_then_sets_the_other_tags() -> None:
    config = configured()
    tag = config.keys.user_tag("alice")
    run = drive(config.epochs.bump_if("alice", tag, EPOCH), [[1], ["OK"]])
    assert run.steps == [("BUMP_IF",), ("SET",)]
    assert run.commands[1][1] == config.keys.epoch_key(config.keys.user_tags("alice")[1])
    assert run.result == BumpIfCall.of(run.commands[0]).epoch == run.commands[1][2]
    assert run.waits == [1, 1], "a request's own bump waits for replicas as invalidate_user"


# -- RedisEpochs on a Redis of its own ------------------------------------------------------


def test_own_redis_is_asked_on_a_miss_and_at_login() -> None:
    epochs = RedisEpochs(redis_url="redis://127.0.0.1:2/0")
    config = configured(epochs)
    assert epochs.cached_key("t") is None and epochs.login_mode() == "given"
    run = drive(epochs.resolve("alice", "t", None), [[EPOCH.encode()]])
    assert run.steps == [("GET",)] and run.result == EPOCH
    assert run.targets == [epochs.clients] and epochs.clients is not config.redis
    run = drive(epochs.login_epoch("alice"), [[OTHER.encode()]])
    assert run.steps == [("ENSURE_EPOCH",)] and run.result == OTHER
    assert run.targets == [epochs.clients]


# -- SQLEpochs: the database holds the truth, Redis a cached copy --------------------------


def test_sql_resolve_reads_the_database_then_fills_the_cache() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    assert drive(epochs.resolve("alice", "t", EPOCH), []).result == EPOCH
    run = drive(epochs.resolve("alice", "t", None), [EPOCH, [EPOCH]])
    assert run.steps == [("SQL",), ("FILL",)] and run.result == EPOCH
    assert run.targets == [None], "the cache lives on the session Redis"
    assert FillCall.of(run.commands[0]).cache_key == config.keys.epoch_key("t")


def test_sql_resolve_of_an_unknown_user_writes_no_cache() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.resolve("nobody", "t", None), [None])
    assert run.steps == [("SQL",)] and run.result is None


def test_sql_resolve_takes_a_newer_cached_value_over_its_read() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.resolve("alice", "t", None), [EPOCH, [OTHER]])
    assert run.result == OTHER, "a bump committed after the read filled the cache first"


def test_sql_login_epoch_agreeing_with_the_cache() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.login_epoch("alice"), [EPOCH, [EPOCH]])
    assert run.steps == [("SQL",), ("FILL",)] and run.result == EPOCH


def test_sql_login_epoch_settles_a_disagreement_with_a_locking_read() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.login_epoch("alice"), [EPOCH, [OTHER], THIRD, [THIRD]])
    assert run.steps == [("SQL",), ("FILL",), ("SQL",), ("FILL",)]
    assert run.result == THIRD
    fill = FillCall.of(run.commands[1])
    assert (fill.expected, fill.epoch) == (OTHER, THIRD), "replaces only the value it saw"


def test_sql_login_epoch_keeps_a_cache_the_locking_read_confirms() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.login_epoch("alice"), [EPOCH, [OTHER], OTHER])
    assert run.steps == [("SQL",), ("FILL",), ("SQL",)] and run.result == OTHER


def test_sql_bump_commits_then_publishes_under_every_tag() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    run = drive(epochs.bump_epoch("alice"), [None, ["OK", "OK"]])
    assert run.steps == [("SQL",), ("SET", "SET")]
    assert {c[1] for c in run.commands} == {
        config.keys.epoch_key(tag) for tag in config.keys.user_tags("alice")
    }
    assert all(c[2] == run.result for c in run.commands)


def test_sql_bump_if_refused_publishes_nothing() -> None:
    epochs = sql_epochs()
    configured(epochs)
    run = drive(epochs.bump_if("alice", "t", EPOCH), [False])
    assert run.steps == [("SQL",)] and run.result is None
    run = drive(epochs.bump_if("alice", "t", EPOCH), [True, ["OK", "OK"]])
    assert run.steps == [("SQL",), ("SET", "SET")] and run.result is not None


def _asked_from_a_session(config: SessionConfig) -> tuple[str, tuple[str, str]]:
    """The tag of a session of alice's under the signing key, and that session stamped EPOCH."""
    tag = config.keys.user_tag("alice")
    return tag, (config.keys.session_key(tag, new_session_id()), EPOCH)


def test_sql_bump_if_from_a_session_writes_the_copy_and_restamps_it_in_one_script() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    tag, session = _asked_from_a_session(config)
    run = drive(epochs.bump_if("alice", tag, EPOCH, session, restamp=True),
                [[EPOCH.encode()], True, [1, "OK"]])  # fmt: skip
    assert run.steps == [("HGET",), ("SQL",), ("COPY_AND_RESTAMP", "SET")]
    restamp = CopyAndRestampCall.of(run.commands[1])
    assert (restamp.copy_key, restamp.session) == (config.keys.epoch_key(tag), session[0])
    assert (restamp.epoch, restamp.stamp) == (run.result, EPOCH), "only if still as loaded"
    older_tag = config.keys.user_tags("alice")[1]
    assert run.commands[2][:3] == ("SET", config.keys.epoch_key(older_tag), run.result)
    assert epochs.restamps and not sql_epochs(cache_ttl=0).restamps


def test_sql_bump_if_sends_the_copy_again_when_redis_fails_after_the_commit() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    tag, session = _asked_from_a_session(config)
    dropped = StoreUnavailable("connection dropped")
    run = drive(epochs.bump_if("alice", tag, EPOCH, session, restamp=True),
                [[EPOCH.encode()], True, dropped, [1, "OK"]])  # fmt: skip
    assert run.steps == [("HGET",), ("SQL",), *[("COPY_AND_RESTAMP", "SET")] * 2]
    assert run.commands[1] == run.commands[3], "the same script: safe to send again"
    assert run.result == CopyAndRestampCall.of(run.commands[1]).epoch
    with pytest.raises(StoreUnavailable):
        drive(epochs.bump_if("alice", tag, EPOCH, session, restamp=True),
              [[EPOCH.encode()], True, dropped, dropped])  # fmt: skip


def test_sql_without_a_cache_touches_no_redis() -> None:
    epochs = sql_epochs(cache_ttl=0)
    configured(epochs)
    assert epochs.cached_key("t") is None
    assert drive(epochs.resolve("alice", "t", None), [EPOCH]).steps == [("SQL",)]
    assert drive(epochs.login_epoch("alice"), [EPOCH]).steps == [("SQL",)]
    assert drive(epochs.bump_epoch("alice"), [None]).steps == [("SQL",)]
    assert drive(epochs.read_epoch("alice"), [EPOCH]).result == EPOCH


def test_sql_steps_refuse_before_any_write_when_not_attached() -> None:
    epochs = sql_epochs()
    for step in (epochs.bump_epoch("alice"), epochs.login_epoch("alice")):
        with pytest.raises(RuntimeError, match="not attached"):
            drive(step, [])


# -- the core runs provider steps inline -----------------------------------------------------


def test_a_login_with_sql_epochs_reads_the_epoch_then_writes_the_session() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    session = Session()
    session.login("alice")
    run = drive(
        config.core.commit(Opened(session), time.time()), [EPOCH, [EPOCH], [[EPOCH.encode(), b""]]]
    )
    assert run.steps == [("SQL",), ("FILL",), ("LOGIN",)]
    login = LoginCall.of(run.commands[-1])
    assert (login.mode, login.epoch) == ("given", EPOCH)
    assert [e.kind for e in run.events] == ["login"]


def test_a_login_with_log_out_others_bumps_in_the_database_first() -> None:
    epochs = sql_epochs()
    config = configured(epochs)
    session = Session()
    session.login("alice")
    session.logout_others()
    replies: list[Any] = [None, ["OK", "OK"], [[OTHER.encode(), b""]]]
    run = drive(config.core.commit(Opened(session), time.time()), replies)
    assert run.steps == [("SQL",), ("SET", "SET"), ("LOGIN",)]
    bumped = run.commands[0][2]
    login = LoginCall.of(run.commands[-1])
    assert (login.mode, login.epoch) == ("given", bumped)


def _logged_in_record(config: SessionConfig, epoch: str) -> tuple[str, list[str]]:
    """A cookie header naming a session of alice's stamped `epoch`, and its stored fields."""
    now = time.time()
    ref = CookieRef(config.keys.user_tag("alice"), new_session_id())
    record = Record({"a": "1"}, now - 60, now + 3600, now - 60, "alice", epoch)
    return f"session={config.core.codec.encode(ref)}", config.core.fields.fields(record)


def test_sql_logout_others_that_redis_fails_twice_after_the_commit_ends_the_session() -> None:
    config = configured(sql_epochs())
    header, fields = _logged_in_record(config, EPOCH)
    state = drive(config.core.open(header, time.time()), [[fields, EPOCH]]).result
    state.session.logout_others()
    dropped = StoreUnavailable("connection dropped")
    replies: list[Any] = [[EPOCH.encode()], True, dropped, dropped, [1, 1]]
    run = drive(config.core.commit(state, time.time()), replies)
    assert run.steps == [("HGET",), ("SQL",), *[("COPY_AND_RESTAMP", "SET")] * 2, ("DEL", "ZREM")]
    assert run.result.rejected == "epoch" and run.result.cookie.value is None
    assert [(e.kind, e.reason) for e in run.events] == [("rejected", "unreplicated")]


def test_a_read_missing_the_sql_copy_that_the_database_confirms_asks_no_script() -> None:
    config = configured(sql_epochs())
    header, fields = _logged_in_record(config, EPOCH)
    run = drive(config.core.open(header, time.time()), [[fields, None], EPOCH, [EPOCH]])
    assert run.steps == [("HGETALL", "GET"), ("SQL",), ("FILL",)]
    assert run.result.record is not None and run.result.rejected is None


def test_a_read_the_database_does_not_confirm_asks_the_read_script() -> None:
    config = configured(sql_epochs())
    header, fields = _logged_in_record(config, EPOCH)
    replies: list[Any] = [[fields, None], OTHER, [OTHER], [[fields, OTHER]]]
    run = drive(config.core.open(header, time.time()), replies)
    assert run.steps == [("HGETALL", "GET"), ("SQL",), ("FILL",), ("READ",)]
    assert run.result.rejected == "epoch"
