"""The machine and the versions a run measured, for the results' first line."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform
import subprocess

import redis

from .endtoend import wrk_path
from .settings import REDIS_URL


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _wrk_version() -> str:
    path = wrk_path()
    if path is None:
        return "not installed"
    run = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    words = (run.stdout + run.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def describe() -> dict[str, str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        server = client.info("server")
    finally:
        client.close()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "redis server": str(server.get("redis_version")),
        "starlette": _version("starlette"),
        "starsessions": _version("starsessions"),
        "session-middleware": _version("session-middleware"),
        "uvicorn": f"{_version('uvicorn')} (loop {loop}, http {http})",
        "wrk": _wrk_version(),
    }


def line(env: dict[str, str]) -> str:
    return (
        f"{env['cpus']} CPUs ({env['cpu']}), {env['os']}, Python {env['python']}, "
        f"redis-py {env['redis-py']} (hiredis {env['hiredis']}), Redis server "
        f"{env['redis server']}, starlette {env['starlette']}, starsessions "
        f"{env['starsessions']}, uvicorn {env['uvicorn']}, wrk {env['wrk']}; {env['date']}"
    )
