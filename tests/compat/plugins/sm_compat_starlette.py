"""Starlette's session tests: the harness copies this file into the working copy as
tests/middleware/conftest.py (a conftest, so that its fixture overrides anyio's plugin).

The test module itself is Starlette's, with one import swapped (see harness.py). Here:
the anyio backends are asyncio and trio (anyio's own default is asyncio alone).
session_middleware runs on asyncio only; on trio each test must fail with the
RuntimeError that says so (expected.toml). Keys go under the run's prefix (sm_compat_common).
"""

from __future__ import annotations

import pytest
from sm_compat_common import isolate_key_prefix


def pytest_configure(config: pytest.Config) -> None:
    isolate_key_prefix()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
