"""Expired sessions, heard from Redis keyspace notifications, as ``expired`` events.

Redis can publish a message when a key's TTL runs out (``notify-keyspace-events`` with
``x``, the expired class). ExpiryListener subscribes, in a thread of its own, to the
expiries of this configuration's session records and hands an ``expired`` SessionEvent to
the configuration's listeners (``on_event``, Django's and Flask's ``session_event``).

What an expired event can say: the record is gone when the message arrives, and its key
holds only the session's handle and its user's tag, a keyed hash that cannot be turned
back into a user id. So ``handle`` is set and ``user_id`` is always None; an audit log
finds the user by the handle of the session's ``login`` event. Anonymous sessions expire
too, and are reported alike.

Delivery is at most once: Redis keeps no notification for a listener that was not
connected (a restart, a network break), and reports an expiry when it notices it (on
access, or in its background sweep), which can be later than the TTL. Each time the
connection is lost a warning is logged, whether the listener or redis-py's retry makes it
again, so that a gap in the events shows in the log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._protocol.key_layout import KeySpace
from ._transport.clients import REDIS_ERRORS
from .errors import ConfigurationError
from .events import Listeners, SessionEvent

logger = logging.getLogger("session_middleware")

POLL_SECONDS = 0.5  # how long one wait for a message lasts: the bound of stop()'s wait
RETRY_SECONDS = 1.0  # the pause before reconnecting after Redis could not be reached
RECENT_HANDLES = 1024  # handles remembered to report an expiry once when heard twice
RECONNECTED = (
    "expiry events: the connection to Redis was lost and made again; "
    "expiries in between are not reported"
)


def keyspace_pattern(keys: KeySpace, db: int) -> str:
    """The keyspace channels of this prefix's session records in `db` (``K``)."""
    return f"__keyspace@{db}__:{keys.record_pattern()}"


def keyevent_channel(db: int) -> str:
    """The channel of every expired key of `db` (``E`` notifications)."""
    return f"__keyevent@{db}__:expired"


class ExpiryListener:
    """A thread that turns the expiries of session records into ``expired`` events.

    It listens to both kinds of notification, so either ``K`` or ``E`` with ``x`` in
    ``notify-keyspace-events`` is enough: the keyspace channels of our records (``K``),
    and the db's expired-key channel filtered by our key prefix (``E``). An expiry heard
    on both is reported once. Start it with ``config.listen_for_expiry()``; ``stop()``
    ends it and closes its connection.
    """

    def __init__(self, client: Any, keys: KeySpace, listeners: Listeners) -> None:
        self._client = client
        self._keys = keys
        self._listeners = listeners
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self._pattern = keyspace_pattern(keys, db)
        self._space_prefix = f"__keyspace@{db}__:"
        self._event_channel = keyevent_channel(db)
        self._recent: dict[str, None] = {}
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="session-middleware-expiry", daemon=True
        )

    def start(self) -> ExpiryListener:
        self._thread.start()
        return self

    def wait_subscribed(self, timeout: float) -> bool:
        """True once Redis confirmed the listener's subscriptions (expiries from then on
        are heard)."""
        return self._subscribed.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection; waits up to `timeout` seconds."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ExpiryListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            pubsub = self._client.pubsub()
            confirmed = False
            try:
                pubsub.psubscribe(self._pattern)
                pubsub.subscribe(self._event_channel)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        # Sent last, so answered last: Redis runs both from now on. Answered
                        # again: redis-py reconnected (its retry) and subscribed again.
                        if confirmed:
                            logger.warning(RECONNECTED)
                        confirmed = True
                        self._subscribed.set()
                    self._hear(message)
            except REDIS_ERRORS as error:
                self._subscribed.clear()
                logger.warning("expiry events: Redis cannot be reached (%s); retrying", error)
                self._stopping.wait(RETRY_SECONDS)
            finally:
                pubsub.close()

    def _hear(self, message: dict[str, Any]) -> None:
        channel, data = _text(message.get("channel")), _text(message.get("data"))
        if message.get("type") == "pmessage" and data == "expired":
            key = channel[len(self._space_prefix) :]
        elif message.get("type") == "message" and channel == self._event_channel:
            key = data
        else:
            return
        handle = self._keys.record_handle(key)
        if handle is None or handle in self._recent:
            return
        self._recent[handle] = None
        if len(self._recent) > RECENT_HANDLES:
            del self._recent[next(iter(self._recent))]
        self._listeners.emit((SessionEvent("expired", handle=handle),))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def listen(redis: Any, keys: KeySpace, listeners: Listeners) -> ExpiryListener:
    """A started ExpiryListener on the sync client of `redis` (a RedisClients)."""
    if getattr(redis, "topology", "standalone") == "cluster":
        raise ConfigurationError(
            "expiry events need a single Redis or Sentinel: on a Cluster, keyspace "
            "notifications are published only on the node that holds the key"
        )
    if not redis.can_sync:
        raise ConfigurationError(
            "expiry events need redis_url or a sync Redis client (they run in a thread)"
        )
    return ExpiryListener(redis.sync(), keys, listeners).start()


__all__ = ["ExpiryListener", "keyevent_channel", "keyspace_pattern", "listen"]
