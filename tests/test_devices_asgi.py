"""The devices endpoints on Starlette and FastAPI, through httpx's ASGI transport and the
real Redis."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from session_middleware import SessionConfig, get_session, sessions
from session_middleware.devices.fastapi import devices_api_router
from session_middleware.devices.starlette import devices_router

from .support import SECRET
from .support.counting import Counter, counted_async_client
from .support.devices import (
    CLIENT_IP,
    CROSS_SITE_PROOFS,
    CURL,
    IPHONE_SAFARI,
    SAME_ORIGIN,
    WINDOWS_CHROME,
    check_phone_and_laptop,
    check_unavailable,
    unreachable_config,
)

pytestmark = pytest.mark.anyio
BASE = "/account/sessions"


async def login(request: Request) -> JSONResponse:
    session = get_session(request)
    session.login(request.query_params["user"])
    return JSONResponse({"user": request.query_params["user"]})


async def whoami(request: Request) -> JSONResponse:
    session = get_session(request)
    return JSONResponse({"user": session.user_id, "handle": session.handle})


def starlette_app(config: SessionConfig) -> Any:
    routes = [
        Route("/login", login),
        Route("/whoami", whoami),
        Mount(BASE, devices_router(config)),
    ]
    return config(Starlette(routes=routes))


def fastapi_app(config: SessionConfig) -> Any:
    api = FastAPI()
    api.add_api_route("/login", login)
    api.add_api_route("/whoami", whoami)
    api.mount(BASE, devices_router(config))
    return config(api)


def fastapi_included_app(config: SessionConfig) -> Any:
    api = FastAPI()
    api.add_api_route("/login", login)
    api.add_api_route("/whoami", whoami)
    api.include_router(devices_api_router(config), prefix=BASE)
    return config(api)


class Devices:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.clients: list[httpx.AsyncClient] = []

    def device(
        self, user_agent: str, app: Any = None, cookies: httpx.Cookies | None = None
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app or self.app, client=(CLIENT_IP, 4000))
        client = httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"user-agent": user_agent},
            cookies=cookies,
        )
        self.clients.append(client)
        return client

    async def signed_in(self, user: str, user_agent: str) -> httpx.AsyncClient:
        client = self.device(user_agent)
        assert (await client.get("/login", params={"user": user})).status_code == 200
        return client


@pytest.fixture(
    params=[starlette_app, fastapi_app, fastapi_included_app],
    ids=["starlette", "fastapi-mount", "fastapi-include"],
)
async def devices(request: pytest.FixtureRequest, config: SessionConfig) -> AsyncIterator[Devices]:
    build: Callable[[SessionConfig], Any] = request.param
    rig = Devices(build(config))
    yield rig
    for client in rig.clients:
        await client.aclose()
    await config.aclose()


async def whoami_of(client: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.get("/whoami")).json()
    return answer


async def test_the_list_shows_each_device_and_marks_this_one(devices: Devices) -> None:
    phone = await devices.signed_in("alice", IPHONE_SAFARI)
    laptop = await devices.signed_in("alice", WINDOWS_CHROME)
    answer = await phone.get(f"{BASE}/")
    assert answer.status_code == 200
    phone_handle = (await whoami_of(phone))["handle"]
    laptop_handle = (await whoami_of(laptop))["handle"]
    check_phone_and_laptop(answer, phone_handle, laptop_handle)


async def test_anonymous_requests_are_refused(devices: Devices) -> None:
    stranger = devices.device(CURL)
    assert (await stranger.get(f"{BASE}/")).status_code == 401
    revoke = await stranger.post(f"{BASE}/{'0' * 32}/revoke", headers=SAME_ORIGIN)
    assert revoke.status_code == 401
    others = await stranger.post(f"{BASE}/others/revoke", headers=SAME_ORIGIN)
    assert others.status_code == 401


async def test_another_users_session_is_neither_listed_nor_revocable(devices: Devices) -> None:
    alice = await devices.signed_in("alice", IPHONE_SAFARI)
    bob = await devices.signed_in("bob", WINDOWS_CHROME)
    alice_handle = (await whoami_of(alice))["handle"]
    listed = (await bob.get(f"{BASE}/")).json()["sessions"]
    assert [entry["handle"] for entry in listed] == [(await whoami_of(bob))["handle"]]
    refused = await bob.post(f"{BASE}/{alice_handle}/revoke", headers=SAME_ORIGIN)
    assert refused.status_code == 404
    assert refused.json() == {"error": "no such session"}
    assert (await whoami_of(alice))["user"] == "alice"
    nonsense = await bob.post(f"{BASE}/not-a-handle/revoke", headers=SAME_ORIGIN)
    assert nonsense.status_code == 404


@pytest.mark.parametrize("proof", CROSS_SITE_PROOFS.values(), ids=CROSS_SITE_PROOFS.keys())
async def test_a_revoke_without_same_origin_proof_is_refused(
    devices: Devices, proof: dict[str, str]
) -> None:
    phone = await devices.signed_in("alice", IPHONE_SAFARI)
    laptop = await devices.signed_in("alice", WINDOWS_CHROME)
    laptop_handle = (await whoami_of(laptop))["handle"]
    assert (await phone.post(f"{BASE}/{laptop_handle}/revoke", headers=proof)).status_code == 403
    assert (await phone.post(f"{BASE}/others/revoke", headers=proof)).status_code == 403
    assert (await whoami_of(laptop))["user"] == "alice"


async def test_revoking_a_device_signs_it_out(devices: Devices) -> None:
    phone = await devices.signed_in("alice", IPHONE_SAFARI)
    laptop = await devices.signed_in("alice", WINDOWS_CHROME)
    laptop_handle = (await whoami_of(laptop))["handle"]
    # A browser without Sec-Fetch-Site proves the same origin with Origin.
    answer = await phone.post(
        f"{BASE}/{laptop_handle}/revoke", headers={"origin": "http://testserver"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"revoked": laptop_handle}
    assert (await whoami_of(laptop))["user"] is None
    assert (await whoami_of(phone))["user"] == "alice"
    again = await phone.post(f"{BASE}/{laptop_handle}/revoke", headers=SAME_ORIGIN)
    assert again.status_code == 404


async def test_revoking_this_device_signs_it_out(devices: Devices) -> None:
    phone = await devices.signed_in("alice", IPHONE_SAFARI)
    handle = (await whoami_of(phone))["handle"]
    answer = await phone.post(f"{BASE}/{handle}/revoke", headers=SAME_ORIGIN)
    assert answer.status_code == 200
    assert (await whoami_of(phone))["user"] is None


async def test_signing_out_the_others_keeps_this_device(devices: Devices) -> None:
    phone = await devices.signed_in("alice", IPHONE_SAFARI)
    laptop = await devices.signed_in("alice", WINDOWS_CHROME)
    bob = await devices.signed_in("bob", CURL)
    answer = await phone.post(f"{BASE}/others/revoke", headers=SAME_ORIGIN)
    assert answer.status_code == 200
    assert (await whoami_of(laptop))["user"] is None
    assert (await whoami_of(phone))["user"] == "alice"
    assert (await whoami_of(bob))["user"] == "bob"
    listed = (await phone.get(f"{BASE}/")).json()["sessions"]
    assert [(entry["device"], entry["current"]) for entry in listed] == [("Safari on iPhone", True)]


async def test_last_seen_moves_at_the_refresh_interval_never_on_every_read(
    key_prefix: str,
) -> None:
    counter = Counter()
    client = await counted_async_client(counter)
    hourly = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, refresh_interval=3600)
    # The same sessions, served by a layer that refreshes them every 0.2 s.
    often = sessions(secret_key=SECRET, redis=client, key_prefix=key_prefix, refresh_interval=0.2)
    rig = Devices(starlette_app(hourly))
    try:
        phone = await rig.signed_in("alice", IPHONE_SAFARI)
        (first,) = await hourly.alist_sessions("alice")
        counter.reset()
        for _ in range(5):
            assert (await whoami_of(phone))["user"] == "alice"
        assert counter.commands == ["HGETALL", "GET"] * 5, (
            "a read inside the interval writes nothing"
        )
        (unchanged,) = await hourly.alist_sessions("alice")
        assert unchanged.last_seen == first.last_seen
        # Past the interval, the next read records it: poll for it, bounded.
        phone = rig.device(IPHONE_SAFARI, starlette_app(often), cookies=phone.cookies)
        deadline = time.monotonic() + 10
        for _ in range(10_000):
            await whoami_of(phone)
            (info,) = await often.alist_sessions("alice")
            if info.last_seen > first.last_seen or time.monotonic() > deadline:
                break
        assert info.last_seen > first.last_seen
        assert info.created_at == first.created_at
    finally:
        for device in rig.clients:
            await device.aclose()
        await client.aclose()


async def test_a_store_failure_is_the_503_not_a_traceback(config: SessionConfig) -> None:
    broken = unreachable_config()
    app = config(Starlette(routes=[Route("/login", login), Mount(BASE, devices_router(broken))]))
    rig = Devices(app)
    try:
        phone = await rig.signed_in("alice", IPHONE_SAFARI)
        for answer in (
            await phone.get(f"{BASE}/"),
            await phone.post(f"{BASE}/{'0' * 32}/revoke", headers=SAME_ORIGIN),
        ):
            check_unavailable(answer.status_code, answer.headers, answer.json())
    finally:
        for device in rig.clients:
            await device.aclose()
        await broken.aclose()


def test_the_fastapi_router_shows_in_the_schema(config: SessionConfig) -> None:
    api = FastAPI()
    api.include_router(devices_api_router(config), prefix=BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a duplicate operation id
        paths = api.openapi()["paths"]
    assert set(paths) == {f"{BASE}/", f"{BASE}/others/revoke", f"{BASE}/{{handle}}/revoke"}
    assert set(paths[f"{BASE}/"]) == {"get"}
    assert set(paths[f"{BASE}/{{handle}}/revoke"]) == {"post"}
