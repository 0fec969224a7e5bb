"""The Redis key layout, in one place.

Every key of one user lives under the same Redis Cluster hash tag ``{tag}``, so the
session record and the user's epoch can be read in one round trip to one node (a
pipeline, or one script: record_commands.Writes.read_pipelined, lua_scripts.READ), even
on a cluster::

    {prefix}v2:{<tag>}:s:<hash of session id>   the session record (a HASH, see records.py)
    {prefix}v2:{<tag>}:e                        the user's epoch (or its cache)
    {prefix}v2:{<tag>}:i                        the user's sessions: sorted set of handles,
                                                scored by expiry (ms), with a TTL of its own
    {prefix}v2:replicated                       the master's replication history last seen
                                                with a replica (not on a cluster)

``v2`` is the layout's version: a later layout gets keys of its own beside these.

A session's handle is the hash that keys its record: it names the session in listings and
revocations, and cannot be turned back into a cookie.

The tag of a logged-in session is a keyed hash of the user id, so it reveals nothing
about the user; an anonymous session gets a random tag of the same shape. Redis never
holds a session id: records are keyed by a hash of it.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable

TAG_BYTES = 12
SESSION_ID_BYTES = 32
UserId = str | int
_HEX = frozenset("0123456789abcdef")
_KINDS = {"s": "session", "e": "epoch", "i": "index"}
_GLOB_SPECIAL = frozenset("*?[]\\")
LAYOUT = "v2"
MAX_USER_ID = 256  # characters of a user id's text
USER_TAGS_CACHED = 4096  # users whose tags are remembered (one keyed hash per secret key)


def user_id_text(user_id: UserId) -> str:
    """The canonical text of a user id; only str and int are accepted."""
    if type(user_id) is str and 0 < len(user_id) <= MAX_USER_ID:  # most ids, told at once
        return user_id
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise TypeError(f"user_id must be a str or an int, not {type(user_id).__name__}")
    text = str(user_id)
    if not text or len(text) > MAX_USER_ID:
        raise ValueError(f"user_id must be between 1 and {MAX_USER_ID} characters long")
    return text


def valid_user_id(user_id: object) -> bool:
    if type(user_id) is str:  # the common case, told at once
        return 0 < len(user_id) <= MAX_USER_ID
    try:
        user_id_text(user_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def session_handle(session_id: str) -> str:
    """The public name of a session: a hash of its id, which keys its record."""
    return hashlib.blake2b(session_id.encode(), digest_size=16).hexdigest()


def valid_handle(handle: object) -> bool:
    return isinstance(handle, str) and len(handle) == 32 and set(handle) <= _HEX


def new_anonymous_tag() -> str:
    return secrets.token_hex(TAG_BYTES)


@functools.lru_cache(maxsize=USER_TAGS_CACHED)
def _user_tags(tag_keys: tuple[bytes, ...], text: str) -> tuple[str, ...]:
    tags: list[str] = []
    for tag_key in tag_keys:
        tag = hashlib.blake2b(text.encode(), key=tag_key, digest_size=TAG_BYTES).hexdigest()
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


class KeySpace:
    """Builds every key this package writes."""

    def __init__(self, prefix: str, tag_keys: Callable[[], tuple[bytes, ...]]) -> None:
        """`tag_keys`: the keys of the users' tags in force, one a secret key, the signing
        key's first (derived from the secret keys in cookies.py)."""
        if "{" in prefix or "}" in prefix:
            raise ValueError("key_prefix must not contain '{' or '}' (they mark cluster hash tags)")
        self.prefix = prefix
        self._tag_keys = tag_keys

    def user_tags(self, user_id: UserId) -> tuple[str, ...]:
        """The user's tag under each secret key, the current (signing) key's first.

        While keys rotate, sessions issued under an older key keep the tag of that key;
        an invalidation therefore bumps the epoch under every tag.
        """
        return _user_tags(self._tag_keys(), user_id_text(user_id))

    def user_tag(self, user_id: UserId) -> str:
        return self.user_tags(user_id)[0]

    def session_key(self, tag: str, session_id: str) -> str:
        return self.record_key(tag, session_handle(session_id))

    def record_key(self, tag: str, handle: str) -> str:
        return self.record_key_base(tag) + handle

    def record_key_base(self, tag: str) -> str:
        """A record's key less its handle."""
        return f"{self.prefix}{LAYOUT}:{{{tag}}}:s:"

    def index_key(self, tag: str) -> str:
        return f"{self.prefix}{LAYOUT}:{{{tag}}}:i"

    def epoch_key(self, tag: str) -> str:
        return f"{self.prefix}{LAYOUT}:{{{tag}}}:e"

    def history_key(self) -> str:
        """The replication history last seen with a replica (see _transport/replication.py)."""
        return f"{self.prefix}{LAYOUT}:replicated"

    @staticmethod
    def kind(key: str) -> str | None:
        """'session', 'epoch' or 'index' for a key this layout builds, else None."""
        return _KINDS.get(key.rsplit("}:", 1)[-1][:1]) if "}:" in key else None

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}{LAYOUT}:{{*"

    def record_pattern(self) -> str:
        """A glob (SCAN, PSUBSCRIBE) matching the session records under this prefix."""
        prefix = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in self.prefix)
        return f"{prefix}{LAYOUT}:{{*}}:s:*"

    def record_handle(self, key: str) -> str | None:
        """The handle of a session record's key under this prefix, else None."""
        base, _, handle = key.rpartition("}:s:")
        start = f"{self.prefix}{LAYOUT}:{{"
        if not base.startswith(start) or "}" in base[len(start) :] or not valid_handle(handle):
            return None
        return handle
