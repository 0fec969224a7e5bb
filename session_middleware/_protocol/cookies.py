"""Signing and verifying the session cookie, and building its Set-Cookie header.

The cookie value is ``<tag>.<session id>.<signature>``: an opaque tag (see key_layout.py), at
least 128 random bits of session id, and an itsdangerous HMAC over both. It carries
nothing about the user or the session data.

Everything derived from the secret keys is derived here (SigningKeys): the cookie's HMAC
keys and the keys of the users' tags, so that both always come from the same secret.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from itsdangerous import Signer

from ..errors import ConfigurationError
from .key_layout import SESSION_ID_BYTES, TAG_BYTES, session_handle

logger = logging.getLogger("session_middleware")

SameSite = Literal["lax", "strict", "none"]

MAX_COOKIE_VALUE_LENGTH = 256
_TAG = rf"[0-9a-f]{{{TAG_BYTES * 2}}}"
_SESSION_ID = rf"[A-Za-z0-9_-]{{{-(-SESSION_ID_BYTES * 4 // 3)}}}"
# An HMAC-SHA256 in url-safe base64: 43 characters, the last of which carries two unused
# bits that must be zero, so that each cookie has exactly one accepted spelling.
_SIGNATURE = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
_VALUE = re.compile(rf"({_TAG})\.({_SESSION_ID})\.{_SIGNATURE}")
MAX_CANDIDATES = 4
VERIFIED_ENTRIES = 4096  # payloads whose signatures a verifier remembers
_SIGNED_SUFFIX = 44  # "." and the signature
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"
MIN_SECRET_LENGTH = 32
_PLACEHOLDER_SECRETS = {"secret", "changeme", "change-me", "secret_key", "your-secret-key"}
_COOKIE_SALT = "session_middleware.cookie"
_TAG_KEY_PERSON = b"sm-user-tag"


class _Verifier:
    """Checks itsdangerous signatures (HMAC-SHA256 over the keys its Signer derives) with
    one keyed HMAC state per key, prepared once, and a constant-time comparison.

    The value's shape is checked first (_VALUE), so its signature is the canonical
    spelling: comparing the text is comparing the HMAC.

    The signatures of the payloads that verified are remembered (at most
    VERIFIED_ENTRIES, the oldest forgotten first): a cookie seen again is compared, in
    constant time and against every key as before, with the signatures computed then,
    instead of computing them again. A payload that did not verify is never remembered.
    """

    def __init__(self, signer: Signer) -> None:
        self._states = [
            hmac.new(signer.derive_key(key), digestmod=hashlib.sha256) for key in signer.secret_keys
        ]
        # payload -> (its signature under each key, its reference)
        self._verified: dict[str, tuple[tuple[str, ...], CookieRef]] = {}
        self._remembering = threading.Lock()

    def known(self, value: str) -> CookieRef | None:
        """The reference of a cookie value whose payload verified before, if its signature
        is the one computed then; None otherwise (then verify it)."""
        if len(value) > MAX_COOKIE_VALUE_LENGTH:
            return None
        entry = self._verified.get(value[:-_SIGNED_SUFFIX])
        if entry is None or value[-_SIGNED_SUFFIX] != ".":
            return None
        signature = value[1 - _SIGNED_SUFFIX :]
        if not signature.isascii():  # compare_digest takes ASCII text only
            return None
        signatures, ref = entry
        matched = False
        for expected in signatures:
            matched |= hmac.compare_digest(expected, signature)
        return ref if matched else None

    def verified(self, match: re.Match[str]) -> CookieRef | None:
        """The reference a well-formed cookie value (a _VALUE match) holds, if one of the
        keys signed it."""
        payload, _, signature = match.group(0).rpartition(".")
        data, presented = payload.encode("ascii"), signature.encode("ascii")
        signatures = [_signature(state, data) for state in self._states]
        matched = False
        for expected in signatures:
            matched |= hmac.compare_digest(expected, presented)
        if not matched:
            return None
        ref = CookieRef(tag=match.group(1), session_id=match.group(2))
        entry = (tuple(computed.decode("ascii") for computed in signatures), ref)
        with self._remembering:
            if len(self._verified) >= VERIFIED_ENTRIES:
                del self._verified[next(iter(self._verified))]
            self._verified[payload] = entry
        return ref

    def sign(self, payload: str) -> str:
        """The signature itsdangerous's Signer gives `payload`: it signs with its last key
        (remembered, when the payload verified before)."""
        entry = self._verified.get(payload)
        if entry is not None:
            return entry[0][-1]
        return _signature(self._states[-1], payload.encode("ascii")).decode("ascii")


def _signature(state: Any, payload: bytes) -> bytes:
    mac = state.copy()
    mac.update(payload)
    # base64.urlsafe_b64encode, less its two Python calls; the one "=" of padding dropped.
    return binascii.b2a_base64(mac.digest(), newline=False).translate(_URL_SAFE)[:-1]


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def secret_key_bytes(secret_key: Any) -> list[bytes]:
    """The signing keys: a str, bytes, a Starlette ``Secret`` (anything whose str() is the
    key), or a list of them (the first signs). A weak key is logged, not refused."""
    if not isinstance(secret_key, (list, tuple)):
        secret_key = [secret_key]
    keys = [bytes(k) if isinstance(k, (bytes, bytearray)) else str(k).encode() for k in secret_key]
    if not keys or not all(keys):
        raise ConfigurationError("secret_key must not be empty")
    for key in keys:
        weak = key.strip().lower().decode(errors="replace") in _PLACEHOLDER_SECRETS
        if weak or len(key) < MIN_SECRET_LENGTH:
            # Not refused: the session id's 256 random bits are what an attacker would have
            # to guess; the key only keeps junk cookies from costing a lookup and the tags
            # that name a user's keys in Redis from being computed.
            logger.warning(
                "secret_key is %s; generate a strong one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                "a placeholder" if weak else f"shorter than {MIN_SECRET_LENGTH} characters",
            )
    return keys


class SigningKeys:
    """What one list of secret keys gives (the first signs, every one verifies): the
    cookie's HMAC keys, as itsdangerous derives them, and the keys of the users' tags
    (one a secret key, the signing key's first; see key_layout.py)."""

    __slots__ = ("tag_keys", "verifier")

    def __init__(self, secret_keys: Sequence[bytes]) -> None:
        # itsdangerous signs with the last key and verifies with all; ours signs with the first.
        signer = Signer(
            list(reversed(secret_keys)), salt=_COOKIE_SALT, digest_method=hashlib.sha256
        )
        self.verifier = _Verifier(signer)
        self.tag_keys = tuple(
            hashlib.blake2b(key, digest_size=32, person=_TAG_KEY_PERSON).digest()
            for key in secret_keys
        )


KeySource = Callable[[], "Sequence[str | bytes] | None"]
"""Reads the keys in force at each use (None: no key now); see SecretKeys.read_from."""


class SecretKeys:
    """The secret keys in force: those given to ``sessions(secret_key=...)``, or, when none
    were given, those an integration's source reads at each use (the Flask integration's
    reads ``app.secret_key`` and ``SECRET_KEY_FALLBACKS``). Each list is derived once."""

    def __init__(self, given: Any) -> None:
        self._given = None if given is None else SigningKeys(secret_key_bytes(given))
        self._source: KeySource | None = None

    @property
    def given(self) -> bool:
        """Whether keys were given to ``sessions(secret_key=...)``."""
        return self._given is not None

    @property
    def configured(self) -> bool:
        """Whether keys were given, or a source of them was set."""
        return self._given is not None or self._source is not None

    def read_from(self, source: KeySource) -> None:
        """Read the keys from `source` at each use, unless keys were given: those win."""
        if self._given is None:
            self._source = source

    def current(self) -> SigningKeys | None:
        """The keys in force now; None when the source has none."""
        if self._given is not None:
            return self._given
        if self._source is None:
            raise ConfigurationError("secret_key is required")
        keys = self._source()
        return None if not keys else _derived(tuple(keys))

    def signing(self) -> SigningKeys:
        """The keys in force now; ConfigurationError when there are none."""
        keys = self.current()
        if keys is None:
            raise ConfigurationError(
                "no secret key to sign sessions with: set the app's secret key "
                "(Flask: app.secret_key), or give sessions(secret_key=...)"
            )
        return keys

    def tag_keys(self) -> tuple[bytes, ...]:
        return self.signing().tag_keys

    def verifier(self) -> _Verifier:
        """The verifier of the keys in force now (see signing)."""
        given = self._given
        return self.signing().verifier if given is None else given.verifier


@functools.lru_cache(maxsize=16)
def _derived(keys: tuple[str | bytes, ...]) -> SigningKeys:
    return SigningKeys(secret_key_bytes(list(keys)))


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
    """A verified cookie: the tag and session id we issued, and the session's handle (the
    hash of its id that keys its record), computed once: a cookie seen again (see
    _Verifier.known) brings the same reference, handle included."""

    tag: str
    session_id: str
    handle: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "handle", session_handle(self.session_id))


class CookieCodec:
    """Signs session ids into cookie values and finds a verified id in a Cookie header; also
    renders the Set-Cookie header with the configured name, path, domain and flags."""

    def __init__(
        self,
        secret_keys: SecretKeys,
        *,
        name: str,
        path: str,
        domain: str | None,
        same_site: SameSite,
        secure: bool,
        partitioned: bool,
        max_age: int | None,
    ) -> None:
        self._keys = secret_keys
        self.name = name
        # As given, for an integration that renders the cookie with its framework's helpers.
        self.path, self.domain, self.same_site = path, domain, same_site
        self.secure, self.partitioned = secure, partitioned
        value = rf"([^;]{{0,{MAX_COOKIE_VALUE_LENGTH}}})(?=;|[ \t]*$)"
        self._pairs = re.compile(rf"(?:^|;)[ \t]*{re.escape(name)}[ \t]*=[ \t]*{value}")
        self._alone = f"{name}="
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
        return f"{payload}.{self._keys.verifier().sign(payload)}"

    def decode(self, value: str) -> CookieRef | None:
        """The reference a cookie value holds, or None unless we issued it."""
        if len(value) > MAX_COOKIE_VALUE_LENGTH:
            return None
        verifier = self._keys.verifier()
        known = verifier.known(value)
        if known is not None:
            return known
        match = _VALUE.fullmatch(value)
        return None if match is None else verifier.verified(match)

    def find(self, cookie_header: str | None) -> CookieRef | None:
        """The first valid session cookie in a Cookie header (duplicates are allowed).

        Only the first few well-formed candidates are verified, and the header is scanned
        without being split, so a huge header costs little time and no memory.
        """
        if not cookie_header or self.name not in cookie_header:
            return None
        verifier = self._keys.verifier()
        alone = self._alone
        if (
            len(cookie_header) <= len(alone) + MAX_COOKIE_VALUE_LENGTH
            and cookie_header.startswith(alone)
            and ";" not in cookie_header
        ):
            # The header holds this one cookie (what the pattern below would find):
            # one seen before needs no search.
            known = verifier.known(cookie_header[len(alone) :])
            if known is not None:
                return known
        verified = 0
        for match in self._pairs.finditer(cookie_header):
            value = match.group(1).strip('"')
            known = verifier.known(value)
            if known is not None:
                return known
            well_formed = _VALUE.fullmatch(value)
            if well_formed is None:
                continue
            ref = verifier.verified(well_formed)
            if ref is not None:
                return ref
            verified += 1
            if verified >= MAX_CANDIDATES:
                break
        if verified:
            logger.debug("session cookie refused: bad signature (another key, or tampered)")
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
