"""Real user agents, and what the devices endpoints' tests share."""

from __future__ import annotations

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
CURL = "curl/8.5.0"

SAME_ORIGIN = {"sec-fetch-site": "same-origin"}
CROSS_SITE_PROOFS: dict[str, dict[str, str]] = {
    "no proof": {},
    "cross-site fetch": {"sec-fetch-site": "cross-site"},
    "same-site fetch": {"sec-fetch-site": "same-site"},
    "foreign origin": {"origin": "https://evil.example"},
    "null origin": {"origin": "null"},
}
