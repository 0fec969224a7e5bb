"""One variant under uvicorn, one worker on 127.0.0.1.

``python -m benchmarks.serve KEY PORT PREFIX`` (the end-to-end part starts these).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn

from .variants import Variant, build

CACHE_STATS_PATH = "/_cache-stats"  # served by variants with local_cache only


def with_cache_stats(variant: Variant) -> Any:
    """The variant's app, and at CACHE_STATS_PATH what its local cache counted so far, so the
    load generator's runs can be matched with the cache's hits."""
    app = variant.app

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CACHE_STATS_PATH:
            await app(scope, receive, send)
            return
        cache = variant.cache()
        body = json.dumps(
            {
                "hits": cache.hits,
                "entries": len(cache.entries),
                "healthy": cache.healthy,
                "generation": cache.generation,
            }
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return serve


def main(argv: list[str]) -> None:
    key, port, prefix = argv[0], int(argv[1]), argv[2]
    variant = build(key, prefix)
    uvicorn.run(
        with_cache_stats(variant) if variant.cached else variant.app,
        host="127.0.0.1",
        port=port,
        workers=None,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
