"""Real sessions to tamper with, issued through the middleware, and the settings of the
property-based tests (derandomized and bounded, so a run is the same in CI and here)."""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet, MultiFernet
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from session_middleware import SessionConfig, sessions
from session_middleware._protocol.cookies import CookieCodec
from session_middleware._protocol.records import Cipher, FieldCodec

from . import REDIS_URL, SECRET, keys_under
from .apps import wsgi_app
from .http import cookie_of, wsgi_call
from .stored import record_key, redis_hash

B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


NOISE = B64 + '.;=", \t\\\x00\x7f\xe9\xff'


FERNET_KEY = Fernet.generate_key()


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass
class Issued:
    """Sessions made by the WSGI app on this test's key prefix: one logged in, one not."""

    config: SessionConfig
    alice: str
    anonymous: str
    prefix: str

    @property
    def cookies(self) -> tuple[str, str]:
        return (self.alice, self.anonymous)

    @property
    def codec(self) -> CookieCodec:
        return self.config.core.codec

    def record_fields(self, cookie: str) -> dict[str, str]:
        return redis_hash(record_key(self.config, cookie))

    def session_keys(self) -> list[str]:
        return [key for key in keys_under(self.prefix) if ":s:" in key]


@pytest.fixture
def issued(key_prefix: str) -> Iterator[Issued]:
    config = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    app = config(wsgi_app)
    _, headers, _ = wsgi_call(app, "/login?user=alice")
    alice = cookie_of(headers)
    wsgi_call(app, "/set?key=theme&value=dark", f"session={alice}")
    _, headers, _ = wsgi_call(app, "/set?key=cart&value=3")
    yield Issued(config, alice, cookie_of(headers), key_prefix)
    config.redis.close()


noise_char = st.sampled_from(NOISE) | st.characters(codec="latin-1")


def position_in(draw: st.DrawFn, value: str) -> int:
    return draw(st.integers(0, max(len(value) - 1, 0)))


def flip_char(draw: st.DrawFn, value: str) -> str:
    i = position_in(draw, value)
    return value[:i] + draw(noise_char) + value[i + 1 :]


def insert_noise(draw: st.DrawFn, value: str) -> str:
    i = draw(st.integers(0, len(value)))
    return value[:i] + draw(st.text(noise_char, min_size=1, max_size=3)) + value[i:]


def delete_chars(draw: st.DrawFn, value: str) -> str:
    i = position_in(draw, value)
    return value[:i] + value[i + draw(st.integers(1, 4)) :]


def truncate(draw: st.DrawFn, value: str) -> str:
    return value[: draw(st.integers(0, len(value)))]


def duplicate_part(draw: st.DrawFn, value: str) -> str:
    return value + draw(st.sampled_from(["", ".", " ", '"', "\t"])) + value


def cipher_for(encrypted: bool) -> Cipher | None:
    return MultiFernet([Fernet(FERNET_KEY)]) if encrypted else None


def opened(fields: Mapping[str, str]) -> list[str]:
    """The plaintext of every encrypted field of a record."""
    codec = FieldCodec(cipher_for(True))
    return [
        codec.open(value, name)
        for name, value in fields.items()
        if name in ("u", "m") or name.startswith("d:")
    ]


DROPPED = "dropped a session record"


def dropped_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("session_middleware") and DROPPED in r.getMessage()
    ]
