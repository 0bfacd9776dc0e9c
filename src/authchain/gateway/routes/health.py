"""`GET /health` (seed)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """`{"status":"ok"}` while the gateway answers (it does not ask the node)."""
    return {"status": "ok"}
