"""The framework's floor: an empty FastAPI endpoint on the same server stack (`python -m bench.empty PORT`).

`/bytes?n=N` answers N prebuilt bytes: what the stack costs to send a body of that size with no work behind it,
the ceiling for a bulk response of the same size.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import uvicorn
from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get("/empty")
async def empty() -> dict[str, bool]:
    return {"ok": True}


@lru_cache(maxsize=4)
def _zeros(n: int) -> bytes:
    return bytes(n)


@app.get("/bytes")
async def body(n: int) -> Response:
    return Response(_zeros(n), media_type="application/octet-stream")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
