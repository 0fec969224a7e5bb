"""The one tiny Starlette app every variant runs: a route per scenario.

What differs between variants is only how a route reaches the session (`Access`), so the
app, its routing and its responses cost the same everywhere, the floor included.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

USERS = 1000
THEME = "dark"
CART = [101, 202, 303]
COUNTER = "n:"  # the session keys of /count/{slot}: n:shared, n:0, n:1...


def user_name(number: int) -> str:
    return f"user-{number % USERS}"


class Access(Protocol):
    """How a route of one variant reads, writes and logs in."""

    async def read(self, request: Request) -> str: ...

    async def write(self, request: Request) -> str: ...

    async def login(self, request: Request, user_id: str) -> None: ...

    async def increment(self, request: Request, key: str) -> str: ...

    async def counters(self, request: Request) -> dict[str, int]: ...


def build_app(access: Access, middleware: Sequence[Middleware] = ()) -> Starlette:
    users = itertools.count()

    async def anonymous(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def read(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await access.read(request))

    async def write(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await access.write(request))

    async def login(request: Request) -> PlainTextResponse:
        user_id = user_name(next(users))
        await access.login(request, user_id)
        return PlainTextResponse(user_id)

    async def count(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            await access.increment(request, COUNTER + request.path_params["slot"])
        )

    async def counted(request: Request) -> JSONResponse:
        return JSONResponse(await access.counters(request))

    routes = [
        Route("/anonymous", anonymous),
        Route("/read", read),
        Route("/write", write, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        # Concurrent writes to one session (benchmarks.contention): after the routes above,
        # so that matching those costs what it did.
        Route("/count/{slot}", count, methods=["POST"]),
        Route("/counters", counted),
    ]
    return Starlette(routes=routes, middleware=list(middleware))
