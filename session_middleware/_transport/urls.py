"""Redis URLs: taken apart (`parse_redis_url`), and shown with their credentials masked
(`redact_url`) in every message, log line and repr."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import redis.connection

from ..errors import ConfigurationError

# redis-py leaves it unannotated.
_parse_url: Callable[[str], dict[str, Any]] = redis.connection.parse_url

Topology = Literal["standalone", "cluster", "sentinel"]

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


MASK = "***"
# Query options whose value is a credential (password, sentinel_password...).
_SECRET_OPTION = re.compile(
    r"([?&;][^=&;#]*(?:pass|pwd|secret|token|credential)[^=&;#]*=)([^&;#]*)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """`url` with its credentials masked, for any message, log line or repr.

    The password of the user information becomes ``***`` (all of it when there is no
    ``user:`` part), and so does every query option named like a credential
    (``password=``, ``sentinel_password=``...). Works on malformed URLs too: everything
    up to the last ``@`` is user information, so a password holding ``/``, ``?``, ``#``
    or ``@`` is masked whole (at worst, more than the credentials is masked).
    """
    return "".join(MASK if secret else text for text, secret in _segments(url))


def _segments(url: str) -> list[tuple[str, bool]]:
    """`url` cut into pieces, each marked True when it is a credential."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    pieces = [(scheme + separator, False)]
    head, at, tail = rest.rpartition("@")
    if at:
        user, colon, password = head.partition(":")
        if colon:
            pieces += [(user + colon, False), (password, True), (at, False)]
        else:
            pieces += [(head, True), (at, False)]
    done = 0
    for option in _SECRET_OPTION.finditer(tail):
        pieces += [(tail[done : option.end(1)], False), (option.group(2), True)]
        done = option.end()
    pieces.append((tail[done:], False))
    return pieces


def _secret_parts(url: str) -> list[str]:
    """The credentials in `url`, cut at URL punctuation (pieces of two characters or more)."""
    secrets = " ".join(text for text, secret in _segments(url) if secret)
    return [part for part in re.split(r"[\s:/?#@&;=%]+", secrets) if len(part) >= 2]


def url_error(url: str, problem: str) -> ConfigurationError:
    """A ConfigurationError about `url` that shows it with its credentials masked.

    `problem` may come from a parser that quotes parts of the URL (redis-py's and
    urllib's do, e.g. the text they took for a port): if it holds any piece of the
    credentials it is replaced by a general phrase. Raise the result ``from None`` so that
    the parser's own exception, which may hold the URL, is not chained to it.
    """
    if any(part in problem for part in _secret_parts(url)):
        problem = "it cannot be parsed (percent-encode reserved characters in credentials)"
    return ConfigurationError(f"bad Redis URL {redact_url(url)}: {problem}")


@dataclass(frozen=True)
class RedisURL:
    """A session-store URL, taken apart.

    ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads it.
    ``redis+cluster://[user:password@]host:port[,host:port...][?option=value...]``: a
    Redis Cluster, found through any of the start-up nodes listed.
    ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?...]``: the
    master Sentinel knows as ``service``; the credentials are the master's, and the
    options ``sentinel_username`` / ``sentinel_password`` authenticate to the sentinels.
    The ``rediss+`` forms use TLS. Query options are redis-py's (``socket_timeout``,
    ``max_connections``, ``protocol``...).
    """

    topology: Topology
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the URL masked, the options (passwords among them) left out
        return (
            f"RedisURL({self.topology!r}, {redact_url(self.url)!r}, nodes={self.nodes!r}, "
            f"service={self.service!r})"
        )


def parse_redis_url(url: str) -> RedisURL:
    """Take `url` apart; a URL that cannot serve raises ConfigurationError, whose message
    shows the URL with its credentials masked (see redact_url)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise url_error(url, "not a Redis URL (it has no scheme://)")
    scheme = scheme.lower()
    if scheme in CLUSTER_SCHEMES:
        return _parse_multi_node(url, "cluster", CLUSTER_SCHEMES[scheme], rest)
    if scheme in SENTINEL_SCHEMES:
        return _parse_multi_node(url, "sentinel", SENTINEL_SCHEMES[scheme], rest)
    if scheme not in ("redis", "rediss", "unix"):
        raise url_error(
            url,
            f"unknown scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel:// (rediss+ for TLS)",
        )
    if scheme != "unix":
        _check_db(url, rest.rpartition("@")[2].partition("?")[0].partition("/")[2])
    _check_parses(url, url)
    return RedisURL("standalone", url)


def _check_db(url: str, path: str) -> None:
    """The path of a redis:// URL is a db number (redis-py would ignore any other)."""
    path = path.strip("/")
    if path and not path.isdigit():
        raise url_error(url, f"the path must be a db number (as in /0), not /{path}")


def _check_parses(url: str, plain: str) -> dict[str, Any]:
    """redis-py's reading of `plain` (`url`, or the single-node URL made from it); what it
    refuses becomes a ConfigurationError about `url`, with no exception chained: redis-py's
    and urllib's messages may quote parts of the URL."""
    try:
        return _parse_url(plain)
    except (ValueError, TypeError) as error:  # urllib and redis-py raise both
        problem = str(error)
    raise url_error(url, problem)


def _parse_multi_node(url: str, topology: Topology, base: str, rest: str) -> RedisURL:
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    location, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    credentials, _, hosts = location.rpartition("@")
    nodes = tuple(_node(item, DEFAULT_PORTS[topology], url) for item in hosts.split(","))
    parts = [p for p in path.split("/") if p]
    service: str | None = None
    if topology == "sentinel":
        if not parts:
            raise url_error(
                url, "a Sentinel URL names the service: redis+sentinel://host:port/mymaster"
            )
        service, parts = parts[0], parts[1:]
    if len(parts) > 1:
        raise url_error(url, "unexpected path")
    _check_db(url, "/".join(parts))
    userinfo = f"{credentials}@" if credentials else ""
    db = f"/{parts[0]}" if parts else ""
    host, port = nodes[0]
    plain = f"{base}://{userinfo}{quote(host, safe='')}:{port}{db}"
    options = _check_parses(url, plain + (f"?{query}" if query else ""))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is not None:
        options["ssl"] = True  # only rediss:// sets a connection class here
    if topology == "cluster" and options.get("db", 0) != 0:
        raise url_error(url, "Redis Cluster has only database 0")
    if topology == "cluster":
        options.pop("db", None)
    return RedisURL(topology, url, nodes, service, options)


def _node(item: str, default_port: int, url: str) -> tuple[str, int]:
    host, port = item, str(default_port)
    if item.startswith("["):
        host, _, after = item[1:].partition("]")
        if after.startswith(":"):
            port = after[1:]
    elif ":" in item:
        host, _, port = item.rpartition(":")
    if not host or not port.isdigit():
        raise url_error(url, "a node is not host:port")
    return host, int(port)
