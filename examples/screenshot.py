"""Screenshots of the demo, taken in a real headless Chromium driven by Playwright.

    python examples/screenshot.py [--out docs]

It starts `examples/run.py` on a free port with a throwaway Redis of its own, signs in as
alice from a laptop and a phone, and writes:

- demo.png: the laptop's page, with both devices listed;
- demo-phone.png: the phone, signed out after "Sign out my other devices", at phone width.

It needs `pip install playwright` and a Chromium (Debian's package `chromium`; CHROMIUM
names another binary). It never downloads a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {
    "viewport": {"width": 1000, "height": 900},
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
}


def launch(playwright: Any) -> Any:
    """Debian's Chromium (or $CHROMIUM), headless, with no calls home."""
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> None:
    """Until a server started as `process` accepts connections on `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


class Demo:
    """`python examples/run.py` on a free port, with a throwaway Redis, logging to a file."""

    def __init__(self, log: Path, *arguments: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EPOCHS_URL")}
        environ.update(
            {
                "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",  # nothing answers there
                "EXAMPLES_NO_DEFAULT_REDIS": "1",  # so the launcher starts its own
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [sys.executable, str(EXAMPLES / "run.py"), *arguments, "--port", str(self.port)]
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, env=environ, stdout=output, stderr=subprocess.STDOUT
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        try:
            wait_for_port(self.port, self.process, self.log)
        except RuntimeError:
            self.stop()
            raise

    def reset_link(self) -> str:
        """The last password-reset link the demo printed (it stands in for an email)."""
        links = re.findall(r"https?://\S+/reset\?token=\S+", self.log.read_text())
        if not links:
            raise AssertionError(f"no reset link was printed:\n{self.log.read_text()}")
        return str(links[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def demo(log: Path, *arguments: str) -> Iterator[Demo]:
    running = Demo(log, *arguments)
    try:
        yield running
    finally:
        running.stop()


def sign_in(page: Any, base_url: str, user: str = "alice", password: str = "wonderland") -> None:
    page.goto(base_url + "/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=f"Signed in as {user}").wait_for()


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "demo.png", out / "demo-phone.png"]
    with (
        demo(out / ".demo-screenshot.log") as running,
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        laptop = browser.new_context(**LAPTOP).new_page()
        phone = browser.new_context(**PHONE).new_page()
        sign_in(laptop, running.url)
        sign_in(phone, running.url)
        laptop.reload()
        laptop.locator("tbody tr").nth(1).wait_for()  # the page's script lists both devices
        laptop.screenshot(path=written[0], full_page=True)
        laptop.get_by_role("button", name="Sign out my other devices").click()
        laptop.get_by_role("status").wait_for()  # the sign-out has been answered
        phone.reload()
        phone.get_by_role("status").wait_for()
        phone.screenshot(path=written[1])
        browser.close()
    (out / ".demo-screenshot.log").unlink()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES.parent / "docs")
    for path in take(parser.parse_args().out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
