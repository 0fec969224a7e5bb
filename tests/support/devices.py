"""Real user agents, and what the devices endpoints' tests share."""

from __future__ import annotations

from typing import Any

import httpx

from session_middleware import SessionConfig, sessions

from . import SECRET
from .redis_servers import free_port

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
CURL = "curl/8.5.0"
CLIENT_IP = "203.0.113.9"

SAME_ORIGIN = {"sec-fetch-site": "same-origin"}
CROSS_SITE_PROOFS: dict[str, dict[str, str]] = {
    "no proof": {},
    "cross-site fetch": {"sec-fetch-site": "cross-site"},
    "same-site fetch": {"sec-fetch-site": "same-site"},
    "foreign origin": {"origin": "https://evil.example"},
    "null origin": {"origin": "null"},
}


class WsgiDevices:
    """Browsers, each with its own user agent and cookie jar, on one WSGI app over httpx."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.clients: list[httpx.Client] = []

    def device(self, user_agent: str) -> httpx.Client:
        transport = httpx.WSGITransport(app=self.app, remote_addr=CLIENT_IP)
        client = httpx.Client(
            transport=transport, base_url="http://testserver", headers={"user-agent": user_agent}
        )
        self.clients.append(client)
        return client

    def signed_in(self, user: str, user_agent: str) -> httpx.Client:
        """A browser on which `user` has signed in at ``/login?user=``."""
        client = self.device(user_agent)
        assert client.get("/login", params={"user": user}).status_code == 200
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


def whoami_of(client: httpx.Client) -> dict[str, Any]:
    """What the app's ``/whoami`` says: the session's user and handle."""
    answer: dict[str, Any] = client.get("/whoami").json()
    return answer


def check_phone_and_laptop(answer: Any, phone_handle: str, laptop_handle: str) -> None:
    """The list the phone got, signed in on an iPhone and a Windows laptop: both devices,
    labelled, the phone marked as the current one; no cache may keep it."""
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    listing = answer.json()
    by_handle = {entry["handle"]: entry for entry in listing["sessions"]}
    assert set(by_handle) == {phone_handle, laptop_handle}
    assert by_handle[phone_handle]["current"] is True
    assert by_handle[laptop_handle]["current"] is False
    assert by_handle[phone_handle]["device"] == "Safari on iPhone"
    assert by_handle[laptop_handle]["device"] == "Chrome on Windows"
    assert by_handle[laptop_handle]["user_agent"] == WINDOWS_CHROME
    assert by_handle[laptop_handle]["ip"] == CLIENT_IP
    for entry in by_handle.values():
        assert {"created_at", "last_seen", "expires_at"} <= entry.keys()


def unreachable_config() -> SessionConfig:
    """A configuration whose Redis refuses every connection (nothing listens on its port)."""
    return sessions(
        secret_key=SECRET, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=2.0
    )


def check_unavailable(status: int, headers: Any, body: Any) -> None:
    """The devices endpoints' 503: JSON saying so, retry later, never cached."""
    assert status == 503
    assert headers["retry-after"] == "5" and headers["cache-control"] == "no-store"
    assert "cannot be reached" in body["error"]
