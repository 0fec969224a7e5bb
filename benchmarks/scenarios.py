"""The scenarios: what one request does to the session."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    method: str
    path: str
    logged_in: bool  # the request carries a logged-in session cookie


ANONYMOUS = Scenario("anonymous", "anonymous, session untouched", "GET", "/anonymous", False)
READ = Scenario("read", "logged-in read", "GET", "/read", True)
WRITE = Scenario("write", "logged-in write", "POST", "/write", True)
LOGIN = Scenario("login", "login", "POST", "/login", False)
REQUESTS = (ANONYMOUS, READ, WRITE, LOGIN)

INVALIDATE = "invalidate"  # not a request: config.ainvalidate_user(user_id)
INVALIDATE_LABEL = "invalidate_user (one call)"
INVALIDATED_USER = "user-invalidated"

# The floor carries a cookie of a logged-in cookie's size, so requests are the same size.
FLOOR_COOKIE = "session=" + "x" * 120
