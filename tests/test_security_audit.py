"""Problems a security review of the code found, each pinned by the test that showed it
(docs/security.md, "Found by review, now fixed")."""

from __future__ import annotations

import sys
import time
import tracemalloc
from typing import Any

import itsdangerous
import pytest
from cryptography.fernet import Fernet

from session_middleware import get_session, sessions
from session_middleware.commands import run_sync
from session_middleware.steps import RedisIO
from session_middleware.users import UserSessions

from .apps import wsgi_app
from .support import REDIS_URL, SECRET
from .test_fuzz import B64, cookie_of, record_key, redis_get, redis_set, wsgi_call

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
    stolen = redis_get(record_key(config, alice))
    mallory_epoch = redis_get(config.keys.epoch_key(mallory.split(".")[0]))
    # The epoch sits outside the ciphertext, so it can be swapped even when encrypted.
    redis_set(
        record_key(config, mallory), stolen[: stolen.rindex('"e":"') + 5] + mallory_epoch + '"}'
    )
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
    config.run_sync(config.core.commit(slow, time.time()))
    body = wsgi_call(app, "/read", header)[2]
    assert (body["user"], body["rejected"], body["data"]) == ("alice", None, {"late": "1"})
    config.redis.close()


def anonymous_edit(old: str, new: str) -> tuple[bool, str, str]:
    return (False, old, new)


def logged_in_edit(old: str, new: str) -> tuple[bool, str, str]:
    return (True, old, new)


@pytest.mark.parametrize(
    ("logged_in", "old", "new"),
    [
        pytest.param(*anonymous_edit('"e":""', '"e":"no spaces"'), id="anonymous-bad-epoch"),
        pytest.param(*anonymous_edit('"d":{', '"d":{"n":NaN,'), id="nan-in-data"),
        pytest.param(*anonymous_edit('"d":{', '"d":{"n":1e999,'), id="infinity-in-data"),
        pytest.param(*anonymous_edit('"c":', '"c":' + "1" * 400 + ',"o":'), id="huge-int-time"),
        pytest.param(*logged_in_edit('"u":"alice"', '"u":""'), id="empty-user-id"),
        pytest.param(*logged_in_edit('"u":"alice"', '"u":"' + "a" * 300 + '"'), id="long-user"),
    ],
)
def test_a_record_we_could_not_have_written_is_dropped_not_served(
    key_prefix: str, logged_in: bool, old: str, new: str
) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    first = "/login?user=alice" if logged_in else "/set?key=a&value=1"
    cookie = cookie_of(wsgi_call(app, first)[1])
    raw = redis_get(record_key(config, cookie))
    assert old in raw
    redis_set(record_key(config, cookie), raw.replace(old, new, 1))
    status, _, body = wsgi_call(app, "/set?key=b&value=2", f"session={cookie}")
    assert status == "200 OK"
    assert (body["user"], body["data"]) == (None, {"b": "2"})
    config.redis.close()


def test_listing_survives_a_record_with_a_timestamp_out_of_range(key_prefix: str) -> None:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    cookie = cookie_of(wsgi_call(app, "/login?user=alice")[1])
    raw = redis_get(record_key(config, cookie))
    redis_set(record_key(config, cookie), raw.replace('"c":', '"c":1e300,"o":', 1))
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
