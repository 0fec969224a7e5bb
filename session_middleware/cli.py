"""The operator's command line: list, revoke and invalidate sessions, and check a deployment.

Without --config the command line assumes epochs in Redis (RedisEpochs on the session
Redis). A deployment with epochs elsewhere (SQLEpochs) must pass --config, so that an
invalidation bumps the epoch where it really lives.

Exit codes: 0 done; 1 nothing to do (an unknown handle for `revoke`) or `check` found a
problem; 2 bad usage or configuration; 3 Redis did not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from .clients import UNAVAILABLE
from .config import SessionConfig
from .errors import ConfigurationError
from .users import SessionInfo

OK, NOTHING, USAGE, UNREACHABLE = 0, 1, 2, 3
MIN_REDIS_VERSION = (6, 2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
        return int(args.run(config, args))
    except ConfigurationError as error:
        print(f"session-middleware: {error}", file=sys.stderr)
        return USAGE
    except UNAVAILABLE as error:
        print(f"session-middleware: Redis did not answer: {error}", file=sys.stderr)
        return UNREACHABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-middleware",
        description="List, revoke and invalidate sessions; check a deployment.",
    )
    parser.add_argument(
        "--config",
        metavar="MODULE:NAME",
        help="import the app's SessionConfig (e.g. myapp.main:config); "
        "then the options below are not needed",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="env REDIS_URL")
    parser.add_argument(
        "--key-prefix",
        default=os.environ.get("SESSION_KEY_PREFIX", "sm:"),
        help="env SESSION_KEY_PREFIX (default sm:)",
    )
    parser.add_argument(
        "--secret-key",
        action="append",
        help="the app's secret key, to find a user's keys (repeat for rotated keys; "
        "env SESSION_SECRET_KEY)",
    )
    parser.add_argument("--int-ids", action="store_true", help="user ids are integers")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    listing = commands.add_parser("sessions", help="a user's active sessions")
    listing.add_argument("user")
    listing.set_defaults(run=_sessions)

    revoke = commands.add_parser("revoke", help="end one session of a user")
    revoke.add_argument("user")
    revoke.add_argument("handle")
    revoke.set_defaults(run=_revoke)

    invalidate = commands.add_parser("invalidate", help="end every session of a user")
    invalidate.add_argument("user")
    invalidate.add_argument("--delete", action="store_true", help="also delete the records now")
    invalidate.set_defaults(run=_invalidate)

    check = commands.add_parser("check", help="connect and report what looks unsafe")
    check.set_defaults(run=_check)
    return parser


def _config(args: argparse.Namespace) -> SessionConfig:
    if args.config:
        module_name, _, attribute = args.config.partition(":")
        try:
            config = getattr(importlib.import_module(module_name), attribute or "config")
        except (ImportError, AttributeError) as error:
            raise ConfigurationError(f"cannot import {args.config}: {error}") from None
        if not isinstance(config, SessionConfig):
            raise ConfigurationError(f"{args.config} is not a SessionConfig")
        return config
    secrets = args.secret_key or [os.environ.get("SESSION_SECRET_KEY", "")]
    if not any(secrets):
        if args.run is not _check:
            raise ConfigurationError(
                "give the app's secret key (--secret-key or SESSION_SECRET_KEY): "
                "a user's keys are derived from it"
            )
        secrets = ["x" * 64]  # check reads no user's keys
    return SessionConfig(
        secret_key=secrets,
        redis_url=args.redis_url or "redis://127.0.0.1:6379/0",
        key_prefix=args.key_prefix,
        redis_timeout=3.0,
    )


def _user(args: argparse.Namespace) -> str | int:
    if not args.int_ids:
        return str(args.user)
    try:
        return int(args.user)
    except ValueError:
        raise ConfigurationError(f"--int-ids: {args.user!r} is not an integer") from None


def _operate(config: SessionConfig, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call a user operation, through its async twin when the epochs need an async engine."""
    if getattr(config.epochs, "is_async", False) or not config.redis.can_sync:
        return asyncio.run(getattr(config, "a" + name)(*args, **kwargs))
    return getattr(config, name)(*args, **kwargs)


def _sessions(config: SessionConfig, args: argparse.Namespace) -> int:
    listed = _operate(config, "list_sessions", _user(args))
    if args.json:
        print(json.dumps([info.as_dict() for info in listed], indent=2))
    else:
        print(_table(listed) if listed else f"no active sessions for {args.user}")
    return OK


def _revoke(config: SessionConfig, args: argparse.Namespace) -> int:
    revoked = _operate(config, "revoke_session", _user(args), args.handle)
    _say(args, {"revoked": revoked}, "revoked" if revoked else "no such session of that user")
    return OK if revoked else NOTHING


def _invalidate(config: SessionConfig, args: argparse.Namespace) -> int:
    _operate(config, "invalidate_user", _user(args), delete=args.delete)
    done = "every session of the user is rejected from now on"
    _say(args, {"invalidated": True, "deleted": args.delete}, done)
    return OK


def _check(config: SessionConfig, args: argparse.Namespace) -> int:
    client = config.redis.sync()
    info = client.info("server")
    version = str(info.get("redis_version", "0"))
    latencies = []
    for _ in range(10):
        start = time.perf_counter()
        client.ping()
        latencies.append((time.perf_counter() - start) * 1000)
    counts = {"sessions": 0, "epochs": 0, "indexes": 0}
    plurals = {"session": "sessions", "epoch": "epochs", "index": "indexes"}
    for key in client.scan_iter(match=config.keys.pattern(), count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        kind = config.keys.kind(name)
        if kind is not None:
            counts[plurals[kind]] += 1
    problems = _problems(client, version)
    report = {
        "redis_version": version,
        "redis_mode": info.get("redis_mode"),
        "ping_ms_median": round(statistics.median(latencies), 3),
        "key_prefix": config.keys.prefix,
        "keys": counts,
        "problems": problems,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"Redis {version} ({report['redis_mode']}), ping {report['ping_ms_median']} ms")
        print(f"under {config.keys.prefix!r}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for problem in problems:
            print(f"problem: {problem}")
        if not problems:
            print("no problems found")
    return NOTHING if problems else OK


def _problems(client: Any, version: str) -> list[str]:
    problems = []
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS_VERSION:
        problems.append(
            f"Redis {version} is too old: 6.2 or newer is needed (SET PXAT, ZRANGE BYSCORE)"
        )
    try:
        config = client.config_get("maxmemory*")
        config.update(client.config_get("protected-mode"))
        config.update(client.config_get("requirepass"))
        config.update(client.config_get("bind"))
    except UNAVAILABLE:
        return problems  # CONFIG is often disabled on managed Redis: nothing more to learn
    policy = config.get("maxmemory-policy", "noeviction")
    if config.get("maxmemory", "0") != "0" and policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: under memory pressure Redis evicts sessions "
            "(users logged out) and epochs (their sessions rejected); prefer noeviction"
        )
    loopback = all(
        host.lstrip("-") in ("127.0.0.1", "::1", "localhost")
        for host in config.get("bind", "").split()
    )
    if not config.get("requirepass") and not loopback and config.get("protected-mode") == "no":
        problems.append("Redis accepts connections beyond loopback with no password")
    return problems


def _table(listed: list[SessionInfo]) -> str:
    rows = [("HANDLE", "CREATED", "LAST SEEN", "EXPIRES", "IP", "USER AGENT")]
    for info in listed:
        rows.append(
            (
                info.handle,
                info.created_at.strftime("%Y-%m-%d %H:%M"),
                info.last_seen.strftime("%Y-%m-%d %H:%M"),
                info.expires_at.strftime("%Y-%m-%d %H:%M"),
                info.ip or "-",
                (info.user_agent or "-")[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _say(args: argparse.Namespace, payload: dict[str, Any], message: str) -> None:
    print(json.dumps(payload) if args.json else message)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
