"""The device label of a user agent, with ua-parser (the `devices` extra) and without it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from session_middleware import SessionInfo
from session_middleware._device_label import device_label, plain_label

from .support.devices import CURL, IPHONE_SAFARI, WINDOWS_CHROME

# (user agent, label with ua-parser, label without it when that differs)
AGENTS: dict[str, tuple[str | None, str, str | None]] = {
    "iPhone Safari": (IPHONE_SAFARI, "Safari on iPhone", None),
    "iPad Safari": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari on iPad",
        None,
    ),
    "iPhone Chrome": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "Chrome on iPhone",
        None,
    ),
    "iPhone Firefox": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) FxiOS/132.0 Mobile/15E148 Safari/605.1.15",
        "Firefox on iPhone",
        None,
    ),
    "Android Chrome": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        "Chrome on Android",
        None,
    ),
    "Android Samsung Internet": (
        "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        "Samsung Internet on Android",
        None,
    ),
    "Android Firefox": (
        "Mozilla/5.0 (Android 14; Mobile; rv:132.0) Gecko/132.0 Firefox/132.0",
        "Firefox on Android",
        None,
    ),
    "Android Yandex": (
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/118.0.5993.111 YaBrowser/23.11.1.95.00 SA/3 Mobile Safari/537.36",
        "Yandex Browser on Android",
        "Chrome on Android",
    ),
    "Windows Chrome": (WINDOWS_CHROME, "Chrome on Windows", None),
    "Windows Edge": (
        f"{WINDOWS_CHROME} Edg/131.0.2903.70",
        "Edge on Windows",
        None,
    ),
    "Windows Firefox": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Firefox on Windows",
        None,
    ),
    "Windows Internet Explorer": (
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "IE on Windows",
        "Unknown device",
    ),
    "macOS Safari": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
        "Safari on macOS",
        None,
    ),
    "macOS Opera": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
        "Opera on macOS",
        None,
    ),
    "Linux Firefox": (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Firefox on Linux",
        None,
    ),
    "ChromeOS Chrome": (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "Chrome on ChromeOS",
        None,
    ),
    "Headless Chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.6778.33 Safari/537.36",
        "Headless Chrome on Linux",
        None,
    ),
    "Googlebot": (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
        "Unknown device",
    ),
    "curl": (CURL, "curl", None),
    "Wget": ("Wget/1.21.4", "Wget", None),
    "httpx": ("python-httpx/0.28.1", "python-httpx", None),
    "garbage": ("!!! <script>", "Unknown device", None),
    "blank": ("   ", "Unknown device", None),
    "none": (None, "Unknown device", None),
}
ROWS = list(AGENTS.values())
IDS = list(AGENTS)


@pytest.fixture
def without_ua_parser(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if the `devices` extra were not installed: importing ua_parser fails."""
    monkeypatch.setitem(sys.modules, "ua_parser", None)
    device_label.cache_clear()
    yield
    device_label.cache_clear()


@pytest.mark.parametrize(("agent", "label", "plain"), ROWS, ids=IDS)
def test_the_label_with_ua_parser(agent: str | None, label: str, plain: str | None) -> None:
    pytest.importorskip("ua_parser")
    device_label.cache_clear()
    assert device_label(agent) == label


@pytest.mark.parametrize(("agent", "label", "plain"), ROWS, ids=IDS)
@pytest.mark.usefixtures("without_ua_parser")
def test_the_label_without_ua_parser(agent: str | None, label: str, plain: str | None) -> None:
    assert device_label(agent) == (plain or label)
    if agent:
        assert plain_label(agent) == (plain or label)


def test_session_info_carries_the_label() -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    info = SessionInfo("0" * 32, moment, moment, moment, IPHONE_SAFARI, "203.0.113.9")
    assert info.device == "Safari on iPhone"
    assert info.as_dict()["device"] == "Safari on iPhone"
    anonymous = SessionInfo("0" * 32, moment, moment, moment, None, None)
    assert anonymous.as_dict()["device"] == "Unknown device"
