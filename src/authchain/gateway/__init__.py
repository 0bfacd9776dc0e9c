"""The public HTTP API (seed `api-gateway/`): stateless, in front of one or more nodes.

It talks to nodes only through their RPC (`NodeClient`); it may use chain types and codec to
build transactions, never the engine or storage.
"""
