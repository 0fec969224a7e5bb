"""Starlette's add_middleware with the config= handle: the recipe of
docs/frameworks/starlette.md, run as written, ends a user's sessions from a route."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import REDIS_URL, SECRET

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parent.parent / "docs" / "frameworks" / "starlette.md"
SHOWN_URL = 'redis_url="redis://127.0.0.1:6379/0"'


def _recipe(key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    section = DOC.read_text().split("## A handle for user operations", 1)[1]
    block = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert block is not None
    # The recipe as written, on this test's own key prefix.
    code = block.group(1).replace(SHOWN_URL, f"redis_url={REDIS_URL!r}, key_prefix={key_prefix!r}")
    assert code != block.group(1)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    namespace: dict[str, Any] = {"__name__": "starlette_recipe"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


async def test_a_route_ends_the_users_sessions_through_the_config_handle(
    key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(key_prefix, monkeypatch)
    app, config = recipe["app"], recipe["config"]
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://t") as phone,
        httpx.AsyncClient(transport=transport, base_url="http://t") as laptop,
    ):
        for device in (phone, laptop):
            assert (await device.post("/login/alice")).status_code == 200
        assert len(await config.alist_sessions("alice")) == 2
        reset = await laptop.post("/users/alice/reset-password")
        assert reset.json() == {"sessions_left": 0}
    # The middleware serves the very configuration the route used.
    layers = [app.middleware_stack]
    for _ in range(5):
        layers.append(getattr(layers[-1], "app", None))
    assert any(getattr(layer, "config", None) is config for layer in layers)
    await config.aclose()
