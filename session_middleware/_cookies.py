"""Signing and verifying the session cookie, and building its Set-Cookie header.

The cookie value is ``<tag>.<session id>.<signature>``: an opaque tag (see _redis/key_layout.py), at
least 128 random bits of session id, and an itsdangerous HMAC over both. It carries
nothing about the user or the session data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import Signer

from ._redis.key_layout import SESSION_ID_BYTES, TAG_BYTES

SameSite = Literal["lax", "strict", "none"]

MAX_COOKIE_VALUE_LENGTH = 256
_TAG = rf"[0-9a-f]{{{TAG_BYTES * 2}}}"
_SESSION_ID = rf"[A-Za-z0-9_-]{{{-(-SESSION_ID_BYTES * 4 // 3)}}}"
# An HMAC-SHA256 in url-safe base64: 43 characters, the last of which carries two unused
# bits that must be zero, so that each cookie has exactly one accepted spelling.
_SIGNATURE = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
_VALUE = re.compile(rf"({_TAG})\.({_SESSION_ID})\.{_SIGNATURE}")
MAX_CANDIDATES = 4
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


class _Verifier:
    """Checks itsdangerous signatures (HMAC-SHA256 over the keys its Signer derives) with
    one keyed HMAC state per key, prepared once, and a constant-time comparison.

    The value's shape is checked first (_VALUE), so its signature is the canonical
    spelling: comparing the text is comparing the HMAC.
    """

    def __init__(self, signer: Signer) -> None:
        self._states = [
            hmac.new(signer.derive_key(key), digestmod=hashlib.sha256) for key in signer.secret_keys
        ]

    def valid(self, payload: bytes, signature: bytes) -> bool:
        matched = False
        for state in self._states:
            matched |= hmac.compare_digest(_signature(state, payload), signature)
        return matched

    def sign(self, payload: bytes) -> bytes:
        """The signature itsdangerous's Signer gives `payload`: it signs with its last key."""
        return _signature(self._states[-1], payload)


def _signature(state: Any, payload: bytes) -> bytes:
    mac = state.copy()
    mac.update(payload)
    return base64.urlsafe_b64encode(mac.digest())[:-1]


@dataclass(frozen=True, slots=True)
class CookieUpdate:
    """What a response does to the session cookie: set it to `value` for `max_age` seconds
    (None: until the browser closes), or clear it (`value` None). Each integration renders
    it its own way: ``CookieCodec.render`` for ASGI and WSGI, Flask's and Django's response
    helpers with their own cookie settings."""

    value: str | None
    max_age: int | None


@dataclass(frozen=True, slots=True)
class CookieRef:
    """A verified cookie: the tag and session id we issued."""

    tag: str
    session_id: str


class CookieCodec:
    def __init__(
        self,
        secret_keys: Sequence[bytes],
        *,
        name: str,
        path: str,
        domain: str | None,
        same_site: SameSite,
        secure: bool,
        partitioned: bool,
        max_age: int | None,
    ) -> None:
        # itsdangerous signs with the last key and verifies with all; ours signs with the first.
        self._signer = Signer(
            list(reversed(secret_keys)),
            salt="session_middleware.cookie",
            digest_method=hashlib.sha256,
        )
        self._verifier = _Verifier(self._signer)
        self.name = name
        value = rf"([^;]{{0,{MAX_COOKIE_VALUE_LENGTH}}})(?=;|[ \t]*$)"
        self._pairs = re.compile(rf"(?:^|;)[ \t]*{re.escape(name)}[ \t]*=[ \t]*{value}")
        # Spelt as Starlette's SessionMiddleware spells them, in its order, so that code
        # and tests written against it read our cookie the same way.
        self._path = f"path={path}"
        attributes = ["httponly", f"samesite={same_site}"]
        if secure:
            attributes.append("secure")
        if domain is not None:
            attributes.append(f"domain={domain}")
        if partitioned:
            attributes.append("partitioned")
        self._attributes = "; ".join(attributes)
        self._max_age = max_age

    def encode(self, ref: CookieRef) -> str:
        payload = f"{ref.tag}.{ref.session_id}"
        return f"{payload}.{self._verifier.sign(payload.encode('ascii')).decode('ascii')}"

    def decode(self, value: str) -> CookieRef | None:
        """The reference a cookie value holds, or None unless we issued it."""
        if len(value) > MAX_COOKIE_VALUE_LENGTH:
            return None
        match = _VALUE.fullmatch(value)
        return None if match is None else self._verified(match)

    def _verified(self, match: re.Match[str]) -> CookieRef | None:
        payload, _, signature = match.group(0).rpartition(".")
        if not self._verifier.valid(payload.encode("ascii"), signature.encode("ascii")):
            return None
        return CookieRef(tag=match.group(1), session_id=match.group(2))

    def find(self, cookie_header: str | None) -> CookieRef | None:
        """The first valid session cookie in a Cookie header (duplicates are allowed).

        Only the first few well-formed candidates are verified, and the header is scanned
        without being split, so a huge header costs little time and no memory.
        """
        if not cookie_header or self.name not in cookie_header:
            return None
        verified = 0
        for match in self._pairs.finditer(cookie_header):
            well_formed = _VALUE.fullmatch(match.group(1).strip('"'))
            if well_formed is None:
                continue
            ref = self._verified(well_formed)
            if ref is not None:
                return ref
            verified += 1
            if verified >= MAX_CANDIDATES:
                return None
        return None

    def issue(self, ref: CookieRef, max_age: int | None) -> CookieUpdate:
        """The cookie for a session id; `max_age` caps the configured cookie lifetime."""
        lifetime = self._max_age if max_age is None or self._max_age is None else max_age
        return CookieUpdate(self.encode(ref), lifetime)

    @staticmethod
    def cleared() -> CookieUpdate:
        return CookieUpdate(None, 0)

    def render(self, update: CookieUpdate) -> str:
        """The Set-Cookie header, spelt as Starlette's SessionMiddleware spells it."""
        if update.value is None:
            return f"{self.name}=; {self._path}; Max-Age=0; expires={_EXPIRED}; {self._attributes}"
        age = "" if update.max_age is None else f"Max-Age={update.max_age}; "
        return f"{self.name}={update.value}; {self._path}; {age}{self._attributes}"
