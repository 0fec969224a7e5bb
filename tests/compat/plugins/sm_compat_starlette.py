"""Starlette's session tests: the harness copies this file into the working copy as
tests/middleware/conftest.py (a conftest, so that its fixture overrides anyio's plugin).

The test module itself is Starlette's, with one import swapped (see harness.py). Here:
the anyio backends are asyncio and trio, as in Starlette's CI; trio cases are skipped
(session_middleware does not support trio: see expected.toml) so that they stay visible
in the results. Keys go under the run's prefix (sm_compat_common).
"""

from __future__ import annotations

import pytest
from sm_compat_common import isolate_key_prefix

TRIO_REASON = "trio: session_middleware runs on asyncio only (expected.toml)"


def pytest_configure(config: pytest.Config) -> None:
    isolate_key_prefix()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "trio":
        pytest.skip(TRIO_REASON)
    return str(request.param)
