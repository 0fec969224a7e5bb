"""The cookie's signature is itsdangerous' HMAC-SHA256, checked against every key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from itsdangerous import Signer

from session_middleware import sessions
from session_middleware._protocol.cookies import CookieRef
from session_middleware._protocol.key_layout import new_anonymous_tag, new_session_id

CURRENT, OLDER = "c" * 40, "o" * 40
SALT = "session_middleware.cookie"


@pytest.fixture
def ref() -> CookieRef:
    return CookieRef(new_anonymous_tag(), new_session_id())


def _signed(ref: CookieRef, key: str, salt: str = SALT) -> str:
    signer = Signer(key, salt=salt, digest_method=hashlib.sha256)
    return signer.sign(f"{ref.tag}.{ref.session_id}").decode()


def test_every_key_verifies_and_the_first_signs(ref: CookieRef) -> None:
    codec = sessions(secret_key=[CURRENT, OLDER], redis_url="redis://127.0.0.1:1").core.codec
    assert codec.encode(ref) == _signed(ref, CURRENT)
    assert codec.decode(_signed(ref, CURRENT)) == ref
    assert codec.decode(_signed(ref, OLDER)) == ref
    assert codec.find(f"other=1; session={_signed(ref, OLDER)}") == ref


@pytest.mark.parametrize(
    "forge",
    [
        lambda ref: _signed(ref, "u" * 40),  # a key we do not hold
        lambda ref: _signed(ref, CURRENT, salt="another.purpose"),
        lambda ref: (
            _signed(CookieRef(ref.tag, new_session_id()), CURRENT).rsplit(".", 1)[0]
            + "."
            + _signed(ref, CURRENT).rsplit(".", 1)[1]
        ),  # a signature of another id
    ],
)
def test_a_signature_we_did_not_make_is_refused(
    ref: CookieRef, forge: Callable[[CookieRef], str]
) -> None:
    codec = sessions(secret_key=[CURRENT, OLDER], redis_url="redis://127.0.0.1:1").core.codec
    value = forge(ref)
    assert codec.decode(value) is None
    assert codec.find(f"session={value}") is None
