"""The operator's command line: list, revoke and invalidate sessions, and check a deployment.

Without --config the command line assumes epochs in Redis (RedisEpochs on the session
Redis). A deployment with epochs elsewhere (SQLEpochs) must pass --config, so that an
invalidation bumps the epoch where it really lives. --config imports from the current
directory, as uvicorn and flask do.

The secret key, first found wins: --secret-key-file FILE (one key a line, the signing key
first; a line spelt b'...' is a Python bytes literal, and a file that is not UTF-8 text is
one raw bytes key, as Flask keys often are), --secret-key KEY (visible to other local
users in `ps`: a warning says so), then the environment's SESSION_SECRET_KEY, then
SECRET_KEY. No message shows a password from a
Redis URL or a secret key.

--config names a SessionConfig; one that signs with a Flask app's ``secret_key`` (Flask's
init_app without ``secret_key=``) runs inside an app context of the Flask app defined
beside it, in the same module.

Every user command says where it looked (the Redis URL with its password masked, the db,
the key prefix and a fingerprint of the secret key: the first 8 hex digits of a SHA-256 of
a value derived from the key, never the key) when it found nothing, and what it found.

Exit codes: 0 done; 1 nothing found or nothing to do (no epoch and no session for the
user, an unknown handle for `revoke`) or `check` found a problem; 2 bad usage or
configuration; 3 Redis did not answer.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import functools
import hashlib
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import unquote

from . import __version__
from ._core.user_sessions import SessionInfo, UserState
from ._fail_closed import FAILURES
from ._transport.server_check import expiry_notifications, inspect_server
from ._transport.urls import MASK
from .config import DEFAULT_REDIS_URL, SessionConfig
from .epochs.redis import RedisEpochs
from .errors import ConfigurationError, UnknownUser

T = TypeVar("T")

OK, NOTHING, USAGE, UNREACHABLE = 0, 1, 2, 3

SECRET_ENVIRONMENT = ("SESSION_SECRET_KEY", "SECRET_KEY")  # in this order

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@", re.I)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.redis_url_given = args.redis_url is not None
    args.redis_url = args.redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    hidden = _secrets_of(args)
    try:
        _warn_about_visible_secrets(args)
        config, context = _config(args)
        with context:
            return int(args.run(config, args))
    except (ConfigurationError, ValueError, TypeError) as error:
        _error(str(error), hidden)
        return USAGE
    except UnknownUser as error:
        _error(str(error), hidden)
        return NOTHING
    except FAILURES as error:
        _error(f"Redis did not answer: {error}", hidden)
        return UNREACHABLE


def mask(text: str, hidden: Sequence[str] = ()) -> str:
    """`text` with the password of every URL in it, and each of `hidden`, shown as ***."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for secret in sorted(set(hidden), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _error(message: str, hidden: Sequence[str]) -> None:
    print(f"session-middleware: {mask(message, hidden)}", file=sys.stderr)


def _secrets_of(args: argparse.Namespace) -> list[str]:
    """What must never be printed: the secret keys given and the Redis URL's password."""
    hidden = [*(args.secret_key or []), *(os.environ.get(n, "") for n in SECRET_ENVIRONMENT)]
    match = re.search(r"://[^:@/\s]*:([^@/\s]+)@", args.redis_url)
    if match:
        hidden += [match.group(1), unquote(match.group(1))]
    return [secret for secret in hidden if len(secret) >= 4]


def _warn_about_visible_secrets(args: argparse.Namespace) -> None:
    visible = "is visible to every local user (ps, /proc) and kept in the shell's history"
    if args.secret_key:
        print(
            f"session-middleware: warning: --secret-key {visible}; use --secret-key-file "
            "or SESSION_SECRET_KEY instead",
            file=sys.stderr,
        )
    if args.redis_url_given and _CREDENTIALS.search(args.redis_url):
        print(
            f"session-middleware: warning: the password in --redis-url {visible}; "
            "use REDIS_URL instead",
            file=sys.stderr,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-middleware",
        description="List, revoke and invalidate sessions; check a deployment.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="MODULE:NAME",
        help="import the app's SessionConfig (e.g. myapp.main:config); "
        "then the options below are not needed",
    )
    parser.add_argument("--redis-url", help="env REDIS_URL (default redis://127.0.0.1:6379/0)")
    parser.add_argument(
        "--key-prefix",
        default=os.environ.get("SESSION_KEY_PREFIX", "sm:"),
        help="env SESSION_KEY_PREFIX (default sm:)",
    )
    parser.add_argument(
        "--secret-key-file",
        metavar="FILE",
        help="a file holding the app's secret key (one a line while keys rotate)",
    )
    parser.add_argument(
        "--secret-key",
        action="append",
        help="the app's secret key, to find a user's keys (repeat for rotated keys); "
        "visible in ps: prefer --secret-key-file, or env SESSION_SECRET_KEY or SECRET_KEY",
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
    invalidate.add_argument(
        "--force",
        action="store_true",
        help="set a new epoch even when the user has no epoch and no session here",
    )
    invalidate.set_defaults(run=_invalidate)

    check = commands.add_parser("check", help="connect and report what looks unsafe")
    check.set_defaults(run=_check)
    return parser


def _config(args: argparse.Namespace) -> tuple[SessionConfig, AbstractContextManager[Any]]:
    """The configuration, and the context to run the command in."""
    if args.config:
        return _import_config(args.config)
    secrets = _secret_keys(args)
    if not secrets:
        if args.run is not _check:
            raise ConfigurationError(
                "give the app's secret key (--secret-key-file, SESSION_SECRET_KEY or "
                "SECRET_KEY): a user's keys are derived from it"
            )
        secrets = ["x" * 64]  # check reads no user's keys
    config = SessionConfig(
        secret_key=secrets,
        redis_url=args.redis_url,
        key_prefix=args.key_prefix,
        redis_timeout=3.0,
    )
    return config, contextlib.nullcontext()


def _import_config(reference: str) -> tuple[SessionConfig, AbstractContextManager[Any]]:
    """`module:name` imported as uvicorn and flask do: the current directory comes first."""
    module_name, _, attribute = reference.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        config = getattr(module, attribute or "config")
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"cannot import {reference}: {error}") from None
    if not isinstance(config, SessionConfig):
        raise ConfigurationError(f"{reference} is not a SessionConfig")
    if config.secret_keys.given:
        return config, contextlib.nullcontext()
    return config, _flask_app_context(module, reference)


def _flask_app_context(module: ModuleType, reference: str) -> AbstractContextManager[Any]:
    """An app context of the one Flask app beside a configuration that signs with the
    app's secret key (Flask's init_app without secret_key=)."""
    flask = sys.modules.get("flask")
    apps = [] if flask is None else [v for v in vars(module).values() if isinstance(v, flask.Flask)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"{reference} takes its secret key from a Flask app, and {module.__name__} "
            f"holds {'no' if not apps else len(apps)} Flask apps to read it from",
            "define the app in that module, or give sessions(secret_key=...)",
        )
    context: AbstractContextManager[Any] = apps[0].app_context()
    return context


def _secret_keys(args: argparse.Namespace) -> list[str | bytes]:
    if args.secret_key_file:
        return _key_file(args.secret_key_file)
    if args.secret_key:
        return list(args.secret_key)
    for name in SECRET_ENVIRONMENT:
        if os.environ.get(name):
            return [os.environ[name]]
    return []


def _key_file(path: str) -> list[str | bytes]:
    """The keys of a key file: a text line each (b'...' read as a Python bytes literal),
    or the whole file as one key when it is not UTF-8 text (raw bytes, os.urandom's)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"--secret-key-file: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [data]
    keys = [_key_line(line.strip()) for line in text.splitlines() if line.strip()]
    if not keys:
        raise ConfigurationError(f"--secret-key-file: {path} is empty")
    return keys


def _key_line(line: str) -> str | bytes:
    if not line.startswith(("b'", 'b"')):
        return line
    try:
        key = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        key = None
    if not isinstance(key, bytes):
        raise ConfigurationError("--secret-key-file: a line starting b' is not a bytes literal")
    return key


def key_fingerprint(config: SessionConfig) -> str:
    """Tells two keys apart without showing either: 8 hex digits of a SHA-256 of the value
    the signing key derives for the users' tags (the same for the app and for this
    command exactly when their keys are the same)."""
    derived = config.secret_keys.tag_keys()[0]
    return hashlib.sha256(b"session-middleware key fingerprint\0" + derived).hexdigest()[:8]


def _where(config: SessionConfig) -> dict[str, Any]:
    return {
        "redis": config.store_location,
        "db": _db(config),
        "key_prefix": config.keys.prefix,
        "key_fingerprint": key_fingerprint(config),
    }


def _db(config: SessionConfig) -> int | None:
    try:
        pool = getattr(config.redis.sync(), "connection_pool", None)
    except ConfigurationError:  # an async client given: no sync pool to read
        return None
    db = getattr(pool, "connection_kwargs", {}).get("db", 0)
    return db if isinstance(db, int) else None


def _looked(where: dict[str, Any]) -> str:
    db = "" if where["db"] is None else f" db {where['db']}"
    return (
        f"looked in {where['redis']}{db}, key prefix {where['key_prefix']!r}, "
        f"secret key fingerprint {where['key_fingerprint']}"
    )


def _state(config: SessionConfig, user: str | int) -> UserState:
    return _operate(
        config,
        user,
        functools.partial(config.user_state, user),
        functools.partial(config.auser_state, user),
    )


def _nothing_found(args: argparse.Namespace, where: dict[str, Any]) -> str:
    return (
        f"nothing found for user {args.user!r}: no epoch and no session ({_looked(where)}); "
        "check the user id, the Redis URL and db, the key prefix and the secret key"
    )


def _user(args: argparse.Namespace) -> str | int:
    if not args.int_ids:
        return str(args.user)
    try:
        return int(args.user)
    except ValueError:
        raise ConfigurationError(f"--int-ids: {args.user!r} is not an integer") from None


def _operate(
    config: SessionConfig,
    user: str | int,
    sync: Callable[[], T],
    async_: Callable[[], Coroutine[Any, Any, T]],
) -> T:
    """Run a user operation: its async face when the epochs need an async engine."""
    try:
        if getattr(config.epochs, "is_async", False) or not config.redis.can_sync:
            return asyncio.run(async_())
        return sync()
    except TypeError as error:  # a user id of the wrong type for the epoch store
        hint = "pass --int-ids" if isinstance(user, str) else "leave out --int-ids"
        raise ConfigurationError(f"{error} ({hint})") from None


def _sessions(config: SessionConfig, args: argparse.Namespace) -> int:
    user = _user(args)
    state = _state(config, user)
    if args.json:
        print(json.dumps([info.as_dict() for info in state.sessions], indent=2))
    elif state.sessions:
        print(_table(state.sessions))
    elif state.has_epoch:
        print(f"no active sessions for {args.user} (the user has an epoch here)")
    if state.found:
        return OK
    where = _where(config)
    if not args.json:
        print(f"no active sessions for {args.user}")
    print(f"session-middleware: {_nothing_found(args, where)}", file=sys.stderr)
    return NOTHING


def _revoke(config: SessionConfig, args: argparse.Namespace) -> int:
    user = _user(args)
    revoked = _operate(
        config,
        user,
        functools.partial(config.revoke_session, user, args.handle),
        functools.partial(config.arevoke_session, user, args.handle),
    )
    _say(args, {"revoked": revoked}, "revoked" if revoked else "no such session of that user")
    if not revoked:
        print(
            f"session-middleware: no session {args.handle!r} of user {args.user!r} "
            f"({_looked(_where(config))})",
            file=sys.stderr,
        )
    return OK if revoked else NOTHING


def _invalidate(config: SessionConfig, args: argparse.Namespace) -> int:
    user = _user(args)
    state = _state(config, user)
    where = _where(config)
    # A database of epochs knows its users (an unknown one raises UnknownUser); epochs in
    # Redis exist only once the user logged in or was invalidated under these keys.
    if not state.found and not args.force and isinstance(config.epochs, RedisEpochs):
        print(
            f"session-middleware: {_nothing_found(args, where)}; nothing was changed "
            "(--force sets a new epoch anyway)",
            file=sys.stderr,
        )
        return NOTHING
    _operate(
        config,
        user,
        functools.partial(config.invalidate_user, user, delete=args.delete),
        functools.partial(config.ainvalidate_user, user, delete=args.delete),
    )
    ended = len(state.sessions)
    payload = {
        "invalidated": True,
        "deleted": args.delete,
        "had_epoch": state.has_epoch,
        "sessions_ended": ended,
        "where": where,
    }
    if state.found:
        found = f"{ended} live session{'' if ended == 1 else 's'} ended"
    elif args.force:
        found = "no epoch and no session were found; a new epoch is set anyway (--force)"
    else:
        found = "the user had no epoch and no session; a new epoch is set"
    _say(args, payload, f"invalidated user {args.user!r}: {found} ({_looked(where)})")
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
    findings = inspect_server(client, version)
    problems = findings.problems
    report = {
        "redis_version": version,
        "redis_mode": info.get("redis_mode"),
        "ping_ms_median": round(statistics.median(latencies), 3),
        "key_prefix": config.keys.prefix,
        "keys": counts,
        "problems": problems,
        "warnings": findings.warnings,
        "expiry_events": expiry_notifications(client),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"Redis {version} ({report['redis_mode']}), ping {report['ping_ms_median']} ms")
        print(f"under {config.keys.prefix!r}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for problem in problems:
            print(f"problem: {problem}")
        for warning in findings.warnings:
            print(f"warning: {warning}")
        print(f"expiry events (notify-keyspace-events): {report['expiry_events']}")
        if not problems:
            print("no problems found")
    return NOTHING if problems else OK


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


# The user commands, for other faces of this command line (Django's manage.py sessions):
# each takes the configuration and a namespace of user, handle, json, int_ids, delete, force.
USER_COMMANDS: dict[str, Callable[[SessionConfig, argparse.Namespace], int]] = {
    "list": _sessions,
    "revoke": _revoke,
    "invalidate": _invalidate,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
