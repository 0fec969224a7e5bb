"""The demo in a real browser: Debian's headless Chromium, driven by Playwright.

`python examples/run.py` runs as a newcomer starts it (with a throwaway Redis of its own);
a laptop and a phone sign in, one signs the other out, a device is revoked, the password is
reset, and every forced sign-out is explained. The Flask and Django examples list and sign
out devices too. Then the screenshot commands run.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright comes with [test]")
if not os.access(CHROMIUM, os.X_OK):  # CI installs it (.ci/start-services)
    pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium", pytrace=False)


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshot = load("examples_screenshot", EXAMPLES / "screenshot.py")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with screenshot.demo(tmp_path_factory.mktemp("demo") / "run.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = screenshot.launch(playwright)
        yield launched
        launched.close()


def notice(page: Any) -> str:
    return str(page.get_by_role("status").inner_text())


def device_rows(page: Any, count: int) -> list[str]:
    """The rows of "Where you're signed in", once the page's script has listed `count`."""
    rows = page.locator("section", has_text="Where you're signed in").locator("tbody tr")
    sync_api.expect(rows).to_have_count(count)
    return [str(text) for text in rows.all_inner_texts()]


def test_two_devices_sign_out_revoke_and_reset(demo: Any, browser: Any) -> None:
    laptop = browser.new_context(**screenshot.LAPTOP).new_page()
    phone = browser.new_context(**screenshot.PHONE).new_page()

    laptop.goto(demo.url + "/")
    assert laptop.locator('meta[name="viewport"]').count() == 1
    assert "What to try" in laptop.content() and "second browser" in laptop.content()
    assert laptop.get_by_role("status").count() == 0  # a first visit is not "signed out"

    screenshot.sign_in(laptop, demo.url)
    screenshot.sign_in(phone, demo.url)
    laptop.reload()
    rows = device_rows(laptop, 2)
    (here,) = [row for row in rows if "this device" in row]
    assert "Chrome on Linux" in here
    assert any("Safari on iPhone" in row for row in rows)

    # "Sign out" (this browser) sits in the header, apart from "Sign out my other devices".
    header_buttons = laptop.locator("header").get_by_role("button").all_inner_texts()
    assert header_buttons == ["Sign out"]
    assert laptop.locator("header").get_by_text("Sign out my other devices").count() == 0

    # At phone width nothing overflows sideways.
    width = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width

    # Sign out my other devices: the phone is told why at its next click.
    laptop.get_by_role("button", name="Sign out my other devices").click()
    assert notice(laptop) == "Your other devices have been signed out."
    assert "this device" in device_rows(laptop, 1)[0]
    phone.reload()
    assert phone.get_by_role("heading", name="Sign in").is_visible()
    assert "password was changed, or you signed out your other devices" in notice(phone)
    phone.reload()
    assert phone.get_by_role("status").count() == 0  # said once

    # Revoked from the laptop's device list: the phone is told its session ended.
    screenshot.sign_in(phone, demo.url)
    laptop.reload()
    other = laptop.locator("tr", has_text="Safari on iPhone")
    other.get_by_role("button", name="Sign out").click()
    assert "this device" in device_rows(laptop, 1)[0]
    phone.reload()
    assert "signed out from another device" in notice(phone)

    # Forgot password: a way back, then a reset that signs the laptop out too.
    phone.get_by_role("link", name="Forgot your password?").click()
    phone.get_by_role("link", name="Back to sign in").click()
    assert phone.get_by_role("heading", name="Sign in").is_visible()
    phone.get_by_role("link", name="Forgot your password?").click()
    phone.get_by_label("User name").fill("alice")
    phone.get_by_role("button", name="Send me a reset link").click()
    phone.get_by_role("heading", name="Check your inbox").wait_for()
    phone.goto(demo.reset_link())
    phone.get_by_label("New password").fill("looking-glass")
    phone.get_by_role("button", name="Set the password").click()
    phone.get_by_role("heading", name="Password changed").wait_for()
    laptop.reload()
    assert "password was changed" in notice(laptop)
    screenshot.sign_in(laptop, demo.url, password="looking-glass")

    # Sign out: no notice, it was asked for.
    laptop.locator("header").get_by_role("button", name="Sign out").click()
    assert laptop.get_by_role("heading", name="Sign in").is_visible()
    assert laptop.get_by_role("status").count() == 0


@pytest.mark.parametrize("app", ["flask", "django"])
def test_the_other_examples_list_and_sign_out_devices(
    app: str, browser: Any, tmp_path: Path
) -> None:
    """Flask's blueprint (same-origin check) and Django's views (CSRF token) serve the page."""
    with screenshot.demo(tmp_path / "run.log", "--app", app) as running:
        laptop = browser.new_context(**screenshot.LAPTOP).new_page()
        phone = browser.new_context(**screenshot.PHONE).new_page()
        screenshot.sign_in(laptop, running.url)
        screenshot.sign_in(phone, running.url)
        laptop.reload()
        rows = device_rows(laptop, 2)
        assert any("Safari on iPhone" in row for row in rows)
        laptop.locator("tr", has_text="Safari on iPhone").get_by_role("button").click()
        assert "this device" in device_rows(laptop, 1)[0]
        phone.reload()
        assert "signed out from another device" in notice(phone)
        screenshot.sign_in(phone, running.url)
        laptop.get_by_role("button", name="Sign out my other devices").click()
        assert notice(laptop) == "Your other devices have been signed out."
        phone.reload()
        assert "you signed out your other devices" in notice(phone)
        if app == "django":  # the package's own page (its template), linked from the list
            screenshot.sign_in(phone, running.url)
            laptop.get_by_role("link", name="The same list on a page of its own").click()
            rows = laptop.locator("tbody tr")
            sync_api.expect(rows).to_have_count(2)
            assert "This device" in rows.filter(has_text="Chrome on Linux").inner_text()
            laptop.get_by_role("button", name="Sign out everywhere else").click()
            sync_api.expect(rows).to_have_count(1)
            phone.reload()
            assert "you signed out your other devices" in notice(phone)
    assert "Traceback" not in (tmp_path / "run.log").read_text()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_screenshot_command_writes_the_pictures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "screenshot.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    laptop_width, laptop_height = png_size(tmp_path / "demo.png")
    assert laptop_width == 1000 and laptop_height > 600  # the whole page
    assert png_size(tmp_path / "demo-phone.png") == (780, 1688)  # 390 x 844 at 2x
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-phone.png", "demo.png"]


def test_the_admin_screenshot_command_revokes_a_session_and_writes_the_picture(
    tmp_path: Path,
) -> None:
    """It signs alice in from three browsers, revokes one in Django's admin, and waits for
    the admin's "The session was ended." before it takes the picture."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "admin_screenshot.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    width, height = png_size(tmp_path / "django-admin-sessions.png")
    assert width == 1100 and height > 800  # the whole change page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["django-admin-sessions.png"]
