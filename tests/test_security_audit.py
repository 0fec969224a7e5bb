"""Problems a security review of the code found, each pinned by the test that showed it
(docs/security.md, "Found by review, now fixed")."""

from __future__ import annotations

import logging
import re
import sys
import time
import tracemalloc
from typing import Any

import itsdangerous
import pytest
from cryptography.fernet import Fernet

from session_middleware import get_session, sessions
from session_middleware._core.steps import RedisIO
from session_middleware._core.user_sessions import UserSessions
from session_middleware._redis.round_trip import run_sync

from .apps import wsgi_app
from .support import REDIS_URL, SECRET
from .test_fuzz import (
    B64,
    DROPPED,
    cookie_of,
    record_key,
    redis_edit,
    redis_exists,
    redis_get,
    redis_hash,
    redis_plant,
    wsgi_call,
)

FORGED = "session=" + "a" * 24 + "." + "b" * 43 + "." + "A" * 43


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_record_moved_under_another_users_cookie_is_refused(
    key_prefix: str, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    app = config(wsgi_app)
    alice = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    wsgi_call(app, "/set?key=secret&value=alice-only", f"session={alice}")
    mallory = cookie_of(wsgi_call(app, "/login?user=mallory")[1])
    stolen = redis_hash(record_key(config, alice))
    assert "alice-only" not in str(stolen) or not encrypted
    mallory_epoch = redis_get(config.keys.epoch_key(mallory.split(".")[0]))
    # The epoch sits outside the ciphertext, so it can be swapped even when encrypted.
    redis_plant(record_key(config, mallory), {**stolen, "e": mallory_epoch})
    body = wsgi_call(app, "/read", f"session={mallory}")[2]
    assert (body["user"], body["data"]) == (None, {})
    config.redis.close()


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


Edit = tuple[bool, dict[str, str], tuple[str, ...]]


def anonymous_edit(changes: dict[str, str], removed: tuple[str, ...] = ()) -> Edit:
    return (False, changes, removed)


def logged_in_edit(changes: dict[str, str], removed: tuple[str, ...] = ()) -> Edit:
    return (True, changes, removed)


@pytest.mark.parametrize(
    ("logged_in", "changes", "removed"),
    [
        pytest.param(*anonymous_edit({"e": "no spaces"}), id="anonymous-bad-epoch"),
        pytest.param(*anonymous_edit({"e": ""}), id="anonymous-empty-epoch"),
        pytest.param(*anonymous_edit({"d:n": "NaN"}), id="nan-in-data"),
        pytest.param(*anonymous_edit({"d:n": "1e999"}), id="infinity-in-data"),
        pytest.param(*anonymous_edit({"d:n": "{"}), id="bad-json-in-data"),
        pytest.param(*anonymous_edit({"c": "1" * 400}), id="huge-int-time"),
        pytest.param(*anonymous_edit({"x": "nan"}), id="nan-time"),
        pytest.param(*anonymous_edit({"r": "-1"}), id="negative-time"),
        pytest.param(*anonymous_edit({}, ("x",)), id="missing-expiry"),
        pytest.param(*anonymous_edit({"o": "1"}), id="unknown-field"),
        pytest.param(*anonymous_edit({"m": "[]"}), id="device-info-not-an-object"),
        pytest.param(*logged_in_edit({"u": '""'}), id="empty-user-id"),
        pytest.param(*logged_in_edit({"u": '"' + "a" * 300 + '"'}), id="long-user"),
        pytest.param(*logged_in_edit({"u": "true"}), id="bool-user"),
        pytest.param(*logged_in_edit({}, ("e",)), id="logged-in-without-epoch"),
    ],
)
def test_a_record_we_could_not_have_written_is_dropped_not_served(
    key_prefix: str, logged_in: bool, changes: dict[str, str], removed: tuple[str, ...]
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    first = "/login?user=alice" if logged_in else "/set?key=a&value=1"
    cookie = cookie_of(wsgi_call(app, first)[1])
    key = record_key(config, cookie)
    assert set(removed) <= set(redis_hash(key))
    redis_edit(key, changes, removed)
    status, _, body = wsgi_call(app, "/set?key=b&value=2", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["data"]) == (None, {"b": "2"})
    assert not redis_exists(key)
    config.redis.close()


def test_listing_survives_a_record_with_a_timestamp_out_of_range(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    redis_edit(record_key(config, cookie), {"c": "1e300"})
    assert config.list_sessions("alice") == []
    config.redis.close()


def test_listing_survives_a_key_of_the_wrong_type(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    planted = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    kept = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    redis_plant(record_key(config, planted), "a string")
    (listed,) = config.list_sessions("alice")  # the planted key is left out, not fatal
    assert wsgi_call(app, "/read", f"session={kept}")[2]["user"] == "alice"
    assert listed.handle in record_key(config, kept)
    config.redis.close()


def planted_alice(config: Any, extra: dict[str, str]) -> tuple[Any, str, str]:
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    key = record_key(config, cookie)
    redis_edit(key, extra)
    return app, cookie, key


def assert_dropped(
    app: Any, cookie: str, key: str, caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    """The planted record is refused (a fresh session), deleted, and logged once, by a
    fingerprint of its key, without its contents or the cookie."""
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="session_middleware")
    status, _, body = wsgi_call(app, "/read", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["rejected"], body["data"]) == (None, None, {})
    assert not redis_exists(key)
    lines = [r.getMessage() for r in caplog.records if DROPPED in r.getMessage()]
    assert len(lines) == 1 and re.search(r": key [0-9a-f]{12}$", lines[0]), lines
    logged = " ".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert secret not in logged and cookie.split(".")[1] not in logged


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_planted_record_over_max_session_bytes_is_refused_deleted_and_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        max_session_bytes=2000,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    codec = config.core.fields
    fits = codec.seal('"' + "s" * 100 + '"', "d:fits")
    app, cookie, key = planted_alice(config, {"d:fits": fits})
    assert wsgi_call(app, "/read", f"session={cookie}")[2]["data"] == {"fits": "s" * 100}
    secret = "secret-" + "x" * 2000
    redis_edit(key, {"d:big": codec.seal(f'"{secret}"', "d:big")})
    assert_dropped(app, cookie, key, caplog, secret)
    config.redis.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_a_planted_record_nested_900_levels_is_refused_deleted_and_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, encrypted: bool
) -> None:
    config = sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=Fernet.generate_key() if encrypted else None,
    )
    secret = "secret-deep-value"
    deep = "[" * 900 + f'"{secret}"' + "]" * 900
    app, cookie, key = planted_alice(config, {"d:deep": config.core.fields.seal(deep, "d:deep")})
    assert_dropped(app, cookie, key, caplog, secret)
    config.redis.close()


@pytest.mark.parametrize(
    "planted",
    [
        pytest.param("secret-string-value", id="string"),
        pytest.param(
            '{"v":1,"c":0,"x":9e9,"r":0,"d":{"k":"secret-string-value"}}', id="old-layout"
        ),
        pytest.param([b"secret-string-value"], id="list"),
    ],
)
def test_a_key_of_another_type_at_a_sessions_key_is_deleted_and_logged(
    key_prefix: str, caplog: pytest.LogCaptureFixture, planted: Any
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app, cookie, key = planted_alice(config, {})
    redis_plant(key, planted)
    assert_dropped(app, cookie, key, caplog, "secret-string-value")
    assert config.list_sessions("alice") == []
    config.redis.close()


def test_each_cookie_has_exactly_one_accepted_spelling(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    cookie = cookie_of(wsgi_call(config(wsgi_app), "/login?user=alice")[1])
    accepted = [c for c in B64 if config.core.codec.decode(cookie[:-1] + c) is not None]
    assert accepted == [cookie[-1]]
    config.redis.close()


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every HMAC verification itsdangerous makes, recorded (it still makes them)."""
    checked: list[bytes] = []
    verify = itsdangerous.Signer.verify_signature

    def counted(self: itsdangerous.Signer, value: bytes, sig: bytes) -> bool:
        checked.append(value)
        return verify(self, value, sig)

    monkeypatch.setattr(itsdangerous.Signer, "verify_signature", counted)
    return checked


def test_a_huge_header_costs_few_signature_checks_and_little_memory(
    key_prefix: str, signature_checks: list[bytes]
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    codec = config.core.codec
    cookie = cookie_of(wsgi_call(config(wsgi_app), "/login?user=alice")[1])
    assert codec.find(f"{FORGED}; {FORGED}; session={cookie}") is not None
    signature_checks.clear()
    forged, empty = "; ".join([FORGED] * 7700), ";" * 1_000_000 + "session=x"
    tracemalloc.start()
    try:
        assert codec.find(forged) is None
        assert codec.find(empty) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(signature_checks) <= 8
    assert peak <= 64 * 1024, f"{peak} bytes"
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


def test_a_restarted_wsgi_response_commits_the_session_once(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    status, headers, _ = wsgi_call(config(restarting_app), "/")
    assert status.startswith("500")
    assert len(config.list_sessions("alice")) == 1
    read = wsgi_call(config(wsgi_app), "/read", f"session={cookie_of(headers)}")
    assert read[2]["user"] == "alice"
    config.redis.close()
