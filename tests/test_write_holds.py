"""What a write keeps alive while its commit awaits Redis. The commit runs when the response
starts, with the app's whole stack alive, so every frame of ours in that stack is one more
object that many writes in flight hold at once, and Python's collector runs when those pass
its threshold (docs/performance.md, the garbage collector). The frames are the package's
to keep few: this names them, on the ASGI driver over the multiplexed connection."""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

import session_middleware
from session_middleware import SessionConfig
from session_middleware._transport import multiplexed

from .support.apps import asgi_app

pytestmark = pytest.mark.anyio
PACKAGE = str(Path(session_middleware.__file__).parent)


def ours(code: types.CodeType) -> bool:
    return code.co_filename.startswith(PACKAGE)


def named(code: types.CodeType) -> str:
    """module.function (co_qualname, which names the class, is Python 3.11's)."""
    return f"{Path(code.co_filename).stem}.{code.co_name}"


def stack_of_ours() -> list[str]:
    """The package's frames running in the caller's stack, innermost first."""
    frame: types.FrameType | None = sys._getframe(1)
    names = []
    while frame is not None:
        if ours(frame.f_code):
            names.append(named(frame.f_code))
        frame = frame.f_back
    return names


def suspended_generators_of_ours() -> dict[int, str]:
    """The package's generators alive and suspended, by id: while a round trip runs, the
    core's steps that wait for it, and any other (a fixture's context manager)."""
    return {
        id(found): named(found.gi_code)
        for found in gc.get_objects()
        if type(found) is types.GeneratorType  # isinstance would wake a lazy object up
        and found.gi_frame is not None
        and found.gi_running is False
        and ours(found.gi_code)
    }


async def test_a_write_awaits_its_commit_with_few_frames_of_ours(
    config: SessionConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], list[str]]] = []
    send = multiplexed._Wire.send
    alive_before = suspended_generators_of_ours()

    def recorded(wire: Any, commands: Sequence[Any]) -> Any:
        suspended = suspended_generators_of_ours().items()
        new = sorted(name for key, name in suspended if key not in alive_before)
        seen.append((stack_of_ours(), new))
        return send(wire, commands)

    transport = httpx.ASGITransport(app=config(asgi_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/set?key=cart&value=apples")).status_code == 200
        monkeypatch.setattr(multiplexed._Wire, "send", recorded)
        response = await client.get("/set?key=cart&value=pears")
    assert response.status_code == 200 and "set-cookie" in response.headers
    (_, (stack, generators)) = seen  # the read, then the write
    assert stack == [
        "multiplexed._send",  # MultiplexedRedis: hands the commands to the connection
        "multiplexed.run",  # MultiplexedRedis
        "runners.drive_async",
        "_request_cycle.acommit",
        "asgi.__call__",  # _SendWithSession, the app's send
        "asgi.__call__",  # SessionMiddleware
    ]
    assert generators == ["lifecycle._apply", "lifecycle.commit"]
