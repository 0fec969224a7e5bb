"""Two adjacent releases serve the same sessions at once, in both directions: a record as
the next release writes it (a metadata field this release does not know) and one as the
previous release wrote it (a field with a default left out) are read, written, rotated
and listed, with nothing lost and nobody logged out. Real corruption is still refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from session_middleware import SessionConfig, SessionEvent, sessions

from .support import REDIS_URL, SECRET
from .support.apps import wsgi_app
from .support.http import cookie_of, wsgi_call
from .support.stored import record_key, redis_edit, redis_exists, redis_hash
from .support.tampering import FERNET_KEY

# What the next release adds: a metadata field this one does not know, in the shape the
# record's own metadata takes (a one-letter name, JSON, sealed like the user id).
NEXT_FIELD = "z"
NEXT_VALUE = '{"factors":["password","totp"]}'


def _config(key_prefix: str, encrypted: bool, events: list[SessionEvent]) -> SessionConfig:
    return sessions(
        secret_key=SECRET,
        redis_url=REDIS_URL,
        key_prefix=key_prefix,
        encryption_key=FERNET_KEY if encrypted else None,
        on_event=events.append,
    )


def _as_next_release(config: SessionConfig, key: str) -> None:
    redis_edit(key, {NEXT_FIELD: config.core.fields.seal(NEXT_VALUE, NEXT_FIELD)})


def _as_previous_release(config: SessionConfig, key: str) -> None:
    """Device info absent (none known), and the times to the microsecond (16 digits)."""
    stored = redis_hash(key)
    to_the_microsecond = {name: f"{float(stored[name]):.6f}" for name in ("c", "x", "r")}
    redis_edit(key, to_the_microsecond, removed=["m"])


def _kept_next_field(config: SessionConfig, key: str) -> None:
    stored = redis_hash(key)[NEXT_FIELD]
    assert config.core.fields.open(stored, NEXT_FIELD) == NEXT_VALUE


def _nothing(config: SessionConfig, key: str) -> None:
    pass


def _alice_with_a_cart(config: SessionConfig) -> tuple[Any, str]:
    """The WSGI app, and the cookie of alice's session holding a cart."""
    app = config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=alice")
    cookie = cookie_of(headers)
    wsgi_call(app, "/set?key=cart&value=3", f"session={cookie}")
    return app, cookie


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    ("written_as", "still_there"),
    [(_as_next_release, _kept_next_field), (_as_previous_release, _nothing)],
    ids=["next-release", "previous-release"],
)
def test_a_record_of_an_adjacent_release_is_read_written_rotated_and_listed(
    key_prefix: str,
    encrypted: bool,
    written_as: Callable[[SessionConfig, str], None],
    still_there: Callable[[SessionConfig, str], None],
) -> None:
    events: list[SessionEvent] = []
    config = _config(key_prefix, encrypted, events)
    app, cookie = _alice_with_a_cart(config)
    written_as(config, record_key(config, cookie))

    # Read.
    _, _, body = wsgi_call(app, "/read", f"session={cookie}")
    assert body == {"user": "alice", "rejected": None, "data": {"cart": "3"}}
    # Written: the change lands, the field this release does not know stays.
    _, _, body = wsgi_call(app, "/set?key=step&value=2", f"session={cookie}")
    assert body["data"] == {"cart": "3", "step": "2"}
    still_there(config, record_key(config, cookie))
    # Listed.
    (listed,) = config.list_sessions("alice")
    # Rotated: a new id, the same user, data and (for the next release) field.
    _, headers, body = wsgi_call(app, "/login?user=alice", f"session={cookie}")
    rotated = cookie_of(headers)
    assert body["user"] == "alice" and body["data"] == {"cart": "3", "step": "2"}
    assert not redis_exists(record_key(config, cookie))
    still_there(config, record_key(config, rotated))
    _, _, body = wsgi_call(app, "/read", f"session={rotated}")
    assert body == {"user": "alice", "rejected": None, "data": {"cart": "3", "step": "2"}}
    (relisted,) = config.list_sessions("alice")
    assert relisted.handle != listed.handle
    assert [event.kind for event in events] == ["login", "rotation"], "nobody logged out"
    config.redis.close()


def test_times_are_written_to_ten_microseconds(key_prefix: str) -> None:
    """15 significant digits until 2286: what float() reads on its fast path, at half the
    cost of 16 (the previous release's microseconds, which it still reads)."""
    config = _config(key_prefix, False, [])
    _, cookie = _alice_with_a_cart(config)
    stored = redis_hash(record_key(config, cookie))
    assert all(re.fullmatch(r"[0-9]{10}\.[0-9]{5}", stored[name]) for name in ("c", "x", "r"))
    config.redis.close()


@pytest.mark.parametrize(
    ("changes", "removed"),
    [
        pytest.param({"e": "not an epoch"}, (), id="bad-epoch"),
        pytest.param({"c": "yesterday"}, (), id="not-a-timestamp"),
        pytest.param({"u": "{not json"}, (), id="user-not-json"),
        pytest.param({"m": "[1]"}, (), id="device-info-not-an-object"),
        pytest.param({}, ("x",), id="a-timestamp-missing"),
    ],
)
def test_real_corruption_is_still_refused(
    key_prefix: str, changes: Mapping[str, str], removed: Sequence[str]
) -> None:
    events: list[SessionEvent] = []
    config = _config(key_prefix, False, events)
    app, cookie = _alice_with_a_cart(config)
    key = record_key(config, cookie)
    redis_edit(key, {NEXT_FIELD: NEXT_VALUE, **changes}, removed)
    _, _, body = wsgi_call(app, "/read", f"session={cookie}")
    assert body["user"] is None and body["data"] == {}
    assert not redis_exists(key)
    reasons: list[Any] = [event.reason for event in events if event.kind == "rejected"]
    assert reasons == ["corrupt"]
    config.redis.close()
