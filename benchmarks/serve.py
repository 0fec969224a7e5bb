"""One variant under uvicorn, one worker on 127.0.0.1.

``python -m benchmarks.serve KEY PORT PREFIX`` (the end-to-end part starts these).
"""

from __future__ import annotations

import sys

import uvicorn

from .variants import build


def main(argv: list[str]) -> None:
    key, port, prefix = argv[0], int(argv[1]), argv[2]
    variant = build(key, prefix)
    uvicorn.run(
        variant.app,
        host="127.0.0.1",
        port=port,
        workers=None,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
