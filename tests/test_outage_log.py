"""Every refusal for want of the store leaves one WARNING line with its cause (rate-limited
under an outage), the "unavailable" event carries the error, and DEBUG lines say why a
session was refused."""

from __future__ import annotations

import logging

import pytest
import redis

from session_middleware import SessionEvent, StoreUnavailable, sessions
from session_middleware._fail_closed import OutageLog

from .support import REDIS_URL, SECRET
from .support.http import asgi_client, logged_in_cookie, read_with, wsgi_client

pytestmark = pytest.mark.anyio

# Nothing listens on port 1; the password must never reach a log line.
DOWN_WITH_PASSWORD = "redis://:not-to-be-logged@127.0.0.1:1/0"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "session_middleware" and record.levelno == logging.WARNING
    ]


async def test_a_503_logs_the_operation_the_masked_url_and_the_error(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    up = sessions(secret_key=SECRET, redis_url=REDIS_URL, key_prefix=key_prefix)
    cookie = await logged_in_cookie(up)
    events: list[SessionEvent] = []
    down = sessions(
        secret_key=SECRET,
        redis_url=DOWN_WITH_PASSWORD,
        key_prefix=key_prefix,
        redis_timeout=0.5,
        on_event=events.append,
    )
    with caplog.at_level(logging.WARNING, logger="session_middleware"):
        response = await read_with(down, f"session={cookie}")
    assert response.status_code == 503
    [line] = _warnings(caplog)
    assert "redis://:***@127.0.0.1:1/0" in line and "not-to-be-logged" not in line
    assert "in open" in line and "ConnectionError" in line and "connecting to 127.0.0.1:1" in line
    [event] = [e for e in events if e.reason == "unavailable"]
    assert isinstance(event.error, StoreUnavailable)
    assert isinstance(event.error.__cause__, redis.ConnectionError)


def test_an_outage_logs_one_line_not_one_per_request(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = sessions(
        secret_key=SECRET, redis_url=DOWN_WITH_PASSWORD, key_prefix=key_prefix, redis_timeout=0.5
    )
    with caplog.at_level(logging.WARNING, logger="session_middleware"), wsgi_client(down) as client:
        statuses = [client.get("/set?key=a&value=1").status_code for _ in range(5)]
    assert statuses == [503] * 5
    [line] = _warnings(caplog)
    assert "in commit" in line and "ConnectionError" in line


def test_the_next_line_counts_the_ones_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = OutageLog("redis://127.0.0.1:1/0", interval=10.0, clock=lambda: now[0])
    event = SessionEvent("rejected", reason="unavailable", error=StoreUnavailable("down"))
    with caplog.at_level(logging.WARNING, logger="session_middleware"):
        for moment in (0.0, 1.0, 2.0, 9.9, 10.0, 10.5):
            now[0] = moment
            log(event)
    first, second = _warnings(caplog)
    assert "more since" not in first
    assert "(3 more since the last line)" in second


async def test_debug_lines_say_why_a_session_was_refused(
    config: sessions, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await logged_in_cookie(config)
    await config.ainvalidate_user("alice")
    with caplog.at_level(logging.DEBUG, logger="session_middleware"):
        await read_with(config, f"session={cookie}")
        forged = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
        async with asgi_client(config, forged) as client:
            await client.get("/read")
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("epoch moved" in line for line in debug), debug
    assert any("bad signature" in line for line in debug), debug
