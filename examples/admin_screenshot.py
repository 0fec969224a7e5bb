"""A screenshot of a user's sessions in Django's admin, taken in headless Chromium.

    python examples/admin_screenshot.py [--out docs]

It runs examples/admin_project under Django's development server, with a fresh SQLite
database and the Redis run.py finds (or a throwaway one it starts). Alice signs in from an
iPhone, Firefox on Windows and Chrome on Android; an administrator, on a laptop, opens
alice's change page and revokes the Android session. It writes django-admin-sessions.png:
the change page with the message and the "Sessions" section, a Revoke button for each
session left and "End all sessions".

It needs `pip install playwright` and a Chromium (Debian's package `chromium`; CHROMIUM
names another binary). It never downloads a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from run import find_redis, free_port
from screenshot import LAPTOP, PHONE, launch, wait_for_port

EXAMPLES = Path(__file__).resolve().parent
FILE_NAME = "django-admin-sessions.png"
WINDOWS_FIREFOX = {
    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 "
    "Firefox/133.0",
}
ANDROID_CHROME = {
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
}
ADMIN_LAPTOP = {**LAPTOP, "viewport": {"width": 1100, "height": 800}}
USERS = """
from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@example.com", "admin-password")
User.objects.create_user("alice", "alice@example.com", "wonderland", is_staff=True,
                         first_name="Alice", last_name="Liddell")
"""


@contextlib.contextmanager
def admin_project(directory: Path) -> Iterator[str]:
    """The project's development server on a free port, its base URL."""
    redis_url, throwaway = find_redis(dict(os.environ))
    key_prefix = f"admin-screenshot:{secrets.token_hex(4)}:"
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "admin_project.settings",
        "PYTHONPATH": str(EXAMPLES),
        "ADMIN_PROJECT_DATABASE": str(directory / "db.sqlite3"),
        "REDIS_URL": redis_url,
        "SESSION_KEY_PREFIX": key_prefix,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
    }

    def django(*arguments: str, **options: Any) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "django", *arguments], env=environ, check=True, **options
        )

    django("migrate", "--no-input", stdout=subprocess.DEVNULL)
    django("shell", "-c", USERS)
    port = free_port()
    log = (directory / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, server, directory / "server.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        if throwaway is not None:
            throwaway.stop()
        else:
            forget(redis_url, key_prefix)


def forget(redis_url: str, key_prefix: str) -> None:
    """Delete what this run left in a Redis that others use."""
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def admin_login(page: Any, base_url: str, user: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")


def take(out: Path) -> Path:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = out / FILE_NAME
    with (
        tempfile.TemporaryDirectory(prefix="admin-screenshot-") as directory,
        admin_project(Path(directory)) as base_url,
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        for device in (PHONE, WINDOWS_FIREFOX, ANDROID_CHROME):
            admin_login(browser.new_context(**device).new_page(), base_url, "alice", "wonderland")
        admin = browser.new_context(**ADMIN_LAPTOP).new_page()
        admin_login(admin, base_url, "admin", "admin-password")
        admin.goto(f"{base_url}/admin/auth/user/")
        admin.get_by_role("link", name="alice").click()
        # Revoke the Android session: the page comes back with the message and two sessions.
        admin.locator("tr", has_text="Chrome on Android").get_by_role("button").click()
        admin.get_by_text("The session was ended.").wait_for()
        admin.get_by_role("button", name="Toggle navigation").click()  # room for the table
        admin.screenshot(path=written, full_page=True)
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES.parent / "docs")
    print(f"wrote {take(parser.parse_args().out)}")


if __name__ == "__main__":
    main()
