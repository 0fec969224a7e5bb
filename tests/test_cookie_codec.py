"""The cookie's signature is itsdangerous' HMAC-SHA256, checked against every key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from itsdangerous import Signer

from session_middleware import sessions
from session_middleware._protocol import cookies
from session_middleware._protocol.cookies import CookieCodec, CookieRef, SecretKeys
from session_middleware._protocol.key_layout import (
    new_anonymous_tag,
    new_session_id,
    session_handle,
)

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


def test_a_reference_carries_its_handle_hashed_once(
    ref: CookieRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = sessions(secret_key=CURRENT, redis_url="redis://127.0.0.1:1").core.codec
    value = _signed(ref, CURRENT)
    found = codec.decode(value)
    assert found is not None and found.handle == session_handle(ref.session_id) == ref.handle
    hashed: list[str] = []
    monkeypatch.setattr(
        cookies, "session_handle", lambda session_id: hashed.append(session_id) or "h"
    )
    again = codec.find(f"session={value}")  # a cookie seen again: the same reference
    assert again is found and again.handle == ref.handle and hashed == []
    assert CookieRef(ref.tag, ref.session_id) == ref and "handle" not in repr(ref)


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


def _codec(keys: object) -> CookieCodec:
    return CookieCodec(
        keys if isinstance(keys, SecretKeys) else SecretKeys(keys),
        name="session",
        path="/",
        domain=None,
        same_site="lax",
        secure=False,
        partitioned=False,
        max_age=None,
    )


def test_a_cookie_seen_again_is_not_signed_again(
    ref: CookieRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec, value = _codec([CURRENT, OLDER]), _signed(ref, OLDER)
    signed: list[bytes] = []
    signature = cookies._signature

    def counted(state: object, payload: bytes) -> bytes:
        signed.append(payload)
        return signature(state, payload)

    monkeypatch.setattr(cookies, "_signature", counted)
    assert codec.find(f"session={value}") == ref
    assert len(signed) == 2  # one HMAC per key
    assert codec.find(f"session={value}") == ref
    assert codec.find(f"other=1; session={value}") == ref
    assert codec.decode(value) == ref
    assert len(signed) == 2


def test_a_remembered_payload_with_another_signature_is_refused(ref: CookieRef) -> None:
    codec = _codec([CURRENT, OLDER])
    assert codec.find(f"session={_signed(ref, CURRENT)}") == ref
    for forged in (_signed(ref, "u" * 40), _signed(ref, CURRENT, salt="another.purpose")):
        assert codec.find(f"session={forged}") is None
        assert codec.find(f'session="{forged}"; other=1') is None
        assert codec.decode(forged) is None
    truncated = _signed(ref, CURRENT)[:-1]
    assert codec.decode(truncated) is None
    assert codec.find(f"session={truncated}") is None
    assert codec.decode(_signed(ref, CURRENT)[:-1] + "\u00e9") is None
    assert codec.find(f"session={_signed(ref, CURRENT)}") == ref


def test_a_key_dropped_from_the_source_no_longer_verifies_a_remembered_cookie(
    ref: CookieRef,
) -> None:
    in_force = [CURRENT, OLDER]
    keys = SecretKeys(None)
    keys.read_from(lambda: list(in_force))
    codec = _codec(keys)
    assert codec.find(f"session={_signed(ref, OLDER)}") == ref
    in_force.remove(OLDER)
    assert codec.find(f"session={_signed(ref, OLDER)}") is None
    assert codec.decode(_signed(ref, OLDER)) is None
    assert codec.find(f"session={_signed(ref, CURRENT)}") == ref


def test_the_oldest_remembered_payload_is_forgotten_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cookies, "VERIFIED_ENTRIES", 2)
    codec = _codec(CURRENT)
    refs = [CookieRef(new_anonymous_tag(), new_session_id()) for _ in range(3)]
    for each in refs:
        assert codec.decode(_signed(each, CURRENT)) == each
    remembered = codec._keys.signing().verifier._verified
    assert list(remembered) == [f"{each.tag}.{each.session_id}" for each in refs[1:]]
    for each in refs:
        assert codec.find(f"session={_signed(each, CURRENT)}") == each


def test_a_verified_cookie_is_signed_again_from_the_remembered_signatures(
    ref: CookieRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = _codec([CURRENT, OLDER])
    assert codec.find(f"session={_signed(ref, OLDER)}") == ref
    monkeypatch.setattr(cookies, "_signature", None)  # no HMAC computed from here on
    assert codec.encode(ref) == _signed(ref, CURRENT)
