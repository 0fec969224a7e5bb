"""A small in-memory user store: PBKDF2 password hashes and one-time reset tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

ITERATIONS = 600_000
MIN_PASSWORD_LENGTH = 8
RESET_TOKEN_LIFETIME = 15 * 60

# The demo accounts' passwords (shown on the login page) are "wonderland" and "builder";
# the store holds only their hashes.
DEMO_USERS = {
    "alice": "pbkdf2_sha256$600000$b20c509d4de722fc98d1ca4c9ad7f63e$"
    "458f4c962843d2080718ac3a5ea2a64da02310028569f032ecb645451bc2642e",
    "bob": "pbkdf2_sha256$600000$803a46b482472f9ee8162903f6d60aa7$"
    "366b4478424ea6c7d045a10ccb9b2248300e7f586b501050dcc7f75ddd6156b8",
}
DEMO_HINT = "alice / wonderland or bob / builder"


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    algorithm, iterations, salt, expected = stored.split("$")
    if algorithm != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


class Accounts:
    """Users and their password-reset tokens, held in this process's memory.

    `users` maps each user id to its stored hash; new passwords are hashed with
    `iterations` rounds of PBKDF2-SHA256.
    """

    def __init__(self, users: dict[str, str], iterations: int = ITERATIONS) -> None:
        self._users = dict(users)
        self._iterations = iterations
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def with_demo_users(cls) -> Accounts:
        return cls(DEMO_USERS)

    def authenticate(self, username: str, password: str) -> str | None:
        """The user id if the password is right, else None."""
        stored = self._users.get(username)
        if stored is None:
            hash_password(password, self._iterations)  # as slow as for a known name
            return None
        return username if check_password(password, stored) else None

    def issue_reset_token(self, username: str) -> str | None:
        """A one-time token for a password reset, or None for an unknown user."""
        if username not in self._users:
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[_digest(token)] = (username, time.time() + RESET_TOKEN_LIFETIME)
        return token

    def peek_reset_token(self, token: str) -> str | None:
        """The user a live token belongs to, without using it up."""
        entry = self._tokens.get(_digest(token))
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def reset_password(self, token: str, new_password: str) -> str:
        """Use up the token and set the password; returns the user id.

        Raises ValueError if the token is unknown, used or expired, or the password is
        too short.
        """
        if len(new_password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
        with self._lock:
            entry = self._tokens.pop(_digest(token), None)
        if entry is None or entry[1] < time.time():
            raise ValueError("this reset link is unknown, used or expired")
        username = entry[0]
        self._users[username] = hash_password(new_password, self._iterations)
        return username


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
