"""Bad input gets a clear error or a safe default: values JSON cannot hold, sessions over
the size limit, and unsafe settings."""

from __future__ import annotations

import time
from typing import Any

import pytest

from session_middleware import ConfigurationError, SessionConfig, get_session, sessions
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.records import SessionTooLarge

from .support import REDIS_URL, SECRET, keys_under
from .support.http import wsgi_call


def test_a_value_json_cannot_hold_raises_type_error_naming_the_key(config: SessionConfig) -> None:
    from session_middleware import Session

    session = Session()
    for key, value in [
        ("when", time),
        ("blob", b"bytes"),
        ("nan", float("nan")),
        ("nested", {"a": [1, {2: "int key"}]}),
        ("obj", object()),
    ]:
        with pytest.raises(TypeError, match=repr(key)):
            session[key] = value
    with pytest.raises(TypeError, match="keys must be str"):
        session[(1, 2)] = "x"  # type: ignore[index]
    assert dict(session) == {}


def test_top_level_keys_json_can_spell_are_stored_as_json_spells_them(
    config: SessionConfig,
) -> None:
    """As with Starlette's cookie sessions (json.dumps): 1 is stored as "1"."""
    from session_middleware import Session

    session = Session()
    session[1] = "x"  # type: ignore[index]
    session[None] = "y"  # type: ignore[index]
    assert session.snapshot() == {"1": "x", "null": "y"}
    assert session.changes({}) == ([("1", '"x"'), ("null", '"y"')], []) or sorted(
        session.changes({})[0]
    ) == [("1", '"x"'), ("null", '"y"')]


def test_a_session_over_max_session_bytes_raises_instead_of_dropping(key_prefix: str) -> None:
    config = sessions(
        secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix, max_session_bytes=1000
    )

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        with pytest.raises(SessionTooLarge, match="max_session_bytes"):
            session["one"] = "x" * 2000
        for key in ("a", "b", "c"):
            session[key] = "x" * 400  # each fits; together they do not
        start_response("200 OK", [])
        return [b"unreachable"]

    with pytest.raises(SessionTooLarge, match="over the limit of 1000"):
        wsgi_call(config(app), "/")
    assert keys_under(key_prefix) == [], "nothing was stored, nothing was cut"
    config.redis.close()


def test_empty_secrets_are_refused_and_weak_ones_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for empty in ["", [], [SECRET, ""]]:
        with pytest.raises(ConfigurationError):
            sessions(secret_key=empty)
    with pytest.raises(ConfigurationError, match="secret_key is required"):
        sessions(secret_key=None)(lambda environ, start_response: [])  # at start-up
    for weak in ["secret", "changeme", "short-key"]:
        caplog.clear()
        sessions(secret_key=weak)  # accepted, as Starlette accepts it
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert f"'{weak}'" not in caplog.text and "short-key" not in caplog.text
    caplog.clear()
    sessions(secret_key=SECRET)
    assert caplog.records == []


def test_a_starlette_secret_is_a_key() -> None:
    from starlette.datastructures import Secret

    config = sessions(secret_key=Secret(SECRET))
    assert config.core.codec.encode(CookieRef("a" * 24, "b" * 43)) == sessions(
        secret_key=SECRET
    ).core.codec.encode(CookieRef("a" * 24, "b" * 43))


def test_same_site_none_without_https_only_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions(secret_key=SECRET, same_site="none")
    assert "https_only" in caplog.text
    caplog.clear()
    sessions(secret_key=SECRET, same_site="none", https_only=True)
    assert caplog.records == []
