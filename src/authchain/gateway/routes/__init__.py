"""One router per resource, gathered in `ROUTERS`."""

from authchain.gateway.routes import accounts, blocks, health, models, txs

ROUTERS = [health.router, models.router, txs.router, blocks.router, accounts.router]

__all__ = ["ROUTERS"]
