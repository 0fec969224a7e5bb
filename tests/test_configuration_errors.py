"""A configuration that cannot serve is refused when it is built, with a SessionError
(ConfigurationError) that says what to do, never accepted to fail at the first request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from session_middleware import ConfigurationError, SessionError, SessionMiddleware, sessions

from .support import SECRET


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


def wsgi_app(environ: Any, start_response: Any) -> Any:
    raise AssertionError("never called")


def test_an_unknown_keyword_names_the_closest_one() -> None:
    with pytest.raises(ConfigurationError, match=r"max_agee: did you mean max_age\?"):
        sessions(secret_key=SECRET, max_agee=5)  # type: ignore[call-arg]


def test_an_unknown_keyword_of_the_middleware_names_the_closest_one() -> None:
    with pytest.raises(ConfigurationError, match=r"session_cokie: did you mean session_cookie\?"):
        SessionMiddleware(asgi_app, secret_key=SECRET, session_cokie="s")


@pytest.mark.anyio
async def test_add_middleware_with_an_unknown_keyword_is_a_configuration_error() -> None:
    app = Starlette()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, https_onyl=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(ConfigurationError, match=r"did you mean https_only\?"):
            await client.get("/")


def test_config_and_settings_together_is_a_configuration_error() -> None:
    config = sessions(secret_key=SECRET)
    with pytest.raises(ConfigurationError, match="not both"):
        SessionMiddleware(asgi_app, config=config, max_age=5)


def test_an_interface_that_does_not_fit_the_app_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="interface='wsgi' does not fit"):
        sessions(secret_key=SECRET, interface="wsgi")(asgi_app)
    with pytest.raises(ConfigurationError, match="interface='asgi' does not fit"):
        sessions(secret_key=SECRET, interface="asgi")(wsgi_app)


def test_a_non_callable_app_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="int is not callable"):
        sessions(secret_key=SECRET)(42)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/abc", "redis://:pw@127.0.0.1/0x1", "rediss://h:1/1/2"]
)
def test_a_url_path_that_is_not_a_db_number_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="db number") as refused:
        sessions(secret_key=SECRET, redis_url=url)
    assert ":pw@" not in str(refused.value)


def test_local_cache_on_a_wsgi_app_is_refused() -> None:
    config = sessions(secret_key=SECRET, local_cache=100)
    with pytest.raises(ConfigurationError, match="ASGI apps only"):
        config(wsgi_app)


def test_a_bad_key_prefix_is_a_session_error() -> None:
    with pytest.raises(SessionError, match="key_prefix"):
        sessions(secret_key=SECRET, key_prefix="a{b}")


def test_a_url_given_as_redis_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis_url="):
        sessions(secret_key=SECRET, redis="redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cookie",
    [
        {"session_cookie": "__host-session"},  # browsers match the prefix in any case
        {"session_cookie": "__SECURE-session"},
        {"session_cookie": "__Host-session", "https_only": True, "path": "/app"},
        {"session_cookie": "__HOST-session", "https_only": True, "domain": "example.com"},
        {"session_cookie": "my session"},
        {"session_cookie": "a;b"},
        {"session_cookie": "a,b"},
        {"session_cookie": "a=b"},
        {"session_cookie": "a\tb"},
        {"session_cookie": ""},
        {"path": "/a; Domain=evil.example"},
        {"path": "/a b"},
        {"path": "/a\r\nSet-Cookie: x=1"},
        {"domain": "example.com; Secure"},
        {"domain": "example .com"},
        {"domain": "example.com\n"},
        {"domain": "a.example,b.example"},
    ],
)
def test_cookie_attributes_browsers_drop_or_split_are_refused(cookie: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="cookie"):
        sessions(secret_key=SECRET, **cookie)
    with pytest.raises(ConfigurationError, match="cookie"):
        SessionMiddleware(asgi_app, secret_key=SECRET, **cookie)


@pytest.mark.parametrize(
    "cookie",
    [
        {"session_cookie": "__Host-session", "https_only": True},
        {"session_cookie": "__secure-session", "https_only": True, "path": "/app"},
        {"session_cookie": "my.session-id_2", "domain": ".example.com", "path": "/a,b/"},
    ],
)
def test_valid_cookie_attributes_are_accepted(cookie: dict[str, Any]) -> None:
    sessions(secret_key=SECRET, **cookie)
