"""Test helpers, one module per kind; this one holds what every test shares: the Redis it
talks to, the secrets, and a key prefix of each test's own.

    apps            tiny raw ASGI and WSGI apps, one session operation per route
    busy            processes spinning on the CPU, for a worker on a busy machine
    counting        Redis clients that count round trips and commands
    django_native   the Django app, user model and settings of the Django tests
    http            in-process requests and httpx clients over the apps
    load_app        an example-like app with the same routes under ASGI and WSGI
    local_cache     workers with local_cache, and waiting for their listeners
    redis_servers   throwaway redis-server processes: standalone, cluster, Sentinel
    sql             the SQLEpochs tests' databases, tables and apps
    stored          reading and planting what Redis holds under a test's prefix
    stories         browsers and the story every topology must pass
    tampering       real sessions to tamper with, and Hypothesis settings
"""

from __future__ import annotations

import os
import uuid

import redis

from session_middleware.testing._redis_server import delete_keys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "test-secret-key-0123456789abcdefghijklmnop"
OTHER_SECRET = "another-secret-key-0123456789abcdefghijklm"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens there: Redis unreachable


def new_prefix() -> str:
    return f"smtest:{uuid.uuid4().hex[:10]}:"


def delete_prefix(prefix: str) -> None:
    delete_keys(REDIS_URL, prefix)


def keys_under(prefix: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()
