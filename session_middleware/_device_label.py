"""A short device label from a User-Agent: "Safari on iPhone", "Chrome on Windows", "curl".

With the ``devices`` extra installed, ua-parser (the uap-core rules) reads the agent;
without it, a plain reading knows the common browsers and platforms.
"""

from __future__ import annotations

import functools
import re

UNKNOWN_DEVICE = "Unknown device"
_LONGEST_NAME = 40

# Checked in order: Edge, Opera and Samsung Internet also say "Chrome", Chrome says "Safari".
_BROWSERS = (
    (("Edg/", "EdgA/", "EdgiOS/"), "Edge"),
    (("OPR/", "OPiOS/"), "Opera"),
    (("SamsungBrowser/",), "Samsung Internet"),
    (("Firefox/", "FxiOS/"), "Firefox"),
    (("HeadlessChrome/",), "Headless Chrome"),
    (("CriOS/", "Chrome/", "Chromium/"), "Chrome"),
    (("Safari/",), "Safari"),
)
_PLATFORMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)
_PRODUCT = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)/\S")

# ua-parser's names, as the label says them.
_UAP_BROWSERS = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
}
_UAP_PLATFORMS = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", "Ubuntu": "Linux"}
_APPLE_DEVICES = ("iPhone", "iPad")


@functools.lru_cache(maxsize=512)
def device_label(user_agent: str | None) -> str:
    """ "<browser> on <platform>", the browser or tool alone when the platform is unknown,
    else "Unknown device"."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN_DEVICE
    parsed = _parsed_by_ua_parser(user_agent)
    return parsed if parsed is not None else plain_label(user_agent)


def plain_label(user_agent: str) -> str:
    """The label as the built-in reading gives it (no ua-parser)."""
    browser = next(
        (name for tokens, name in _BROWSERS if any(token in user_agent for token in tokens)),
        None,
    )
    if browser is None:
        if user_agent.startswith("Mozilla/"):
            return UNKNOWN_DEVICE
        product = _PRODUCT.match(user_agent)  # a tool: "curl/8.5.0" is curl
        return product.group(1)[:_LONGEST_NAME] if product else UNKNOWN_DEVICE
    platform = next((name for token, name in _PLATFORMS if token in user_agent), None)
    return _joined(browser, platform)


def _parsed_by_ua_parser(user_agent: str) -> str | None:
    """The label from ua-parser; None when it is not installed."""
    try:
        from ua_parser import parse
    except ImportError:
        return None
    result = parse(user_agent)
    agent = result.user_agent
    if agent is None or agent.family == "Other":
        return plain_label(user_agent)
    browser = _UAP_BROWSERS.get(agent.family, agent.family)[:_LONGEST_NAME]
    platform = None
    if result.device is not None and result.device.family in _APPLE_DEVICES:
        platform = result.device.family
    elif result.os is not None and result.os.family != "Other":
        platform = _UAP_PLATFORMS.get(result.os.family, result.os.family)[:_LONGEST_NAME]
    return _joined(browser, platform)


def _joined(browser: str, platform: str | None) -> str:
    return f"{browser} on {platform}" if platform else browser
