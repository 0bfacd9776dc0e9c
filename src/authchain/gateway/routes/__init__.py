"""One router per resource, gathered in `ROUTERS`."""

from authchain.gateway.routes import accounts, blocks, claims, health, models, txs

ROUTERS = [
    health.router, models.router, txs.router, blocks.router, accounts.router, claims.router,
]  # fmt: skip

__all__ = ["ROUTERS"]
