"""Optional encryption at rest of session records, with cryptography's Fernet.

Keys rotate like the signing keys: the first encrypts, every one decrypts.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._protocol.records import Cipher
from .errors import ConfigurationError


def fernet_cipher(keys: str | bytes | Sequence[str | bytes]) -> Cipher:
    """A MultiFernet over `keys` (each from ``Fernet.generate_key()``)."""
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ConfigurationError(
            "encryption_key needs the cryptography package: "
            "pip install 'session-middleware[encryption]'"
        ) from None
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    if not keys:
        raise ConfigurationError("encryption_key must not be empty")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ConfigurationError(
            "encryption_key must be Fernet keys (32 url-safe base64-encoded bytes), made by "
            "cryptography.fernet.Fernet.generate_key()"
        ) from error
