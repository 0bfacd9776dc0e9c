"""ABCI over gRPC (`abci.transport = "grpc"`, CometBFT's `abci = "grpc"`): the same
`AbciServer` calls behind CometBFT's `tendermint.abci.ABCI` service.

The socket is the default, and the faster, because of how CometBFT's gRPC client (v0.38) works:
- every request is one unary call, and the caller waits for its answer. The socket client
  pipelines CheckTx and flushes every 20 ms; over gRPC the mempool's recheck after each
  commit is one round trip per pooled tx, made while CometBFT holds the mempool lock.
- it reads answers of at most 4 MiB (grpc-go's default; CometBFT sets none), and
  PrepareProposal's answer carries the block's txs: the config refuses
  `consensus.max_block_size_bytes` above that with this transport.
Measured on 1 and 4 validators, the app spends 2-3 times the CPU per committed tx over gRPC,
1 validator commits 0.92 times and 4 validators half as many txs/s as over the socket (README,
"ABCI transports"; `benchmarks/cometbft.py --transports`). It is here so that the comparison
can be rerun.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from grpc import aio

from authchain.chain.abci.proto import abci
from authchain.chain.abci.server import MAX_MESSAGE_BYTES, AbciServer, parse_listen

log = logging.getLogger(__name__)

SERVICE = "tendermint.abci.ABCI"
METHODS = {
    "Echo": "echo", "Flush": "flush", "Info": "info", "CheckTx": "check_tx", "Query": "query",
    "Commit": "commit", "InitChain": "init_chain", "ListSnapshots": "list_snapshots",
    "OfferSnapshot": "offer_snapshot", "LoadSnapshotChunk": "load_snapshot_chunk",
    "ApplySnapshotChunk": "apply_snapshot_chunk", "PrepareProposal": "prepare_proposal",
    "ProcessProposal": "process_proposal", "ExtendVote": "extend_vote",
    "VerifyVoteExtension": "verify_vote_extension", "FinalizeBlock": "finalize_block",
}  # fmt: skip
"""The service's methods -> the `Request`/`Response` field each one carries."""


def method_handlers(server: AbciServer) -> dict[str, grpc.RpcMethodHandler]:
    """One unary handler per ABCI method, each answered by `AbciServer.handle`, whose
    `exception` answer becomes an INTERNAL status (CometBFT stops on either)."""

    def handler(field: str) -> grpc.RpcMethodHandler:
        async def call(message: Any, context: aio.ServicerContext) -> Any:
            response = await server.handle(abci.Request(**{field: message}))
            if response.WhichOneof("value") == "exception":
                await context.abort(grpc.StatusCode.INTERNAL, response.exception.error)
            return getattr(response, field)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=type(getattr(abci.Request(), field)).FromString,
            response_serializer=type(getattr(abci.Response(), field)).SerializeToString,
        )

    return {method: handler(field) for method, field in METHODS.items()}


async def serve_grpc(server: AbciServer, listen: str, stop: asyncio.Event) -> None:
    """Serve `server` on `listen` (tcp://HOST:PORT or unix:///PATH) until `stop` is set."""
    host, port = parse_listen(listen)
    grpc_server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    service = grpc.method_handlers_generic_handler(SERVICE, method_handlers(server))
    grpc_server.add_generic_rpc_handlers((service,))
    grpc_server.add_insecure_port(f"unix:{port}" if host == "unix" else f"{host}:{port}")
    await grpc_server.start()
    log.info("ABCI gRPC server listening on %s (CometBFT's proxy_app, abci = grpc)", listen)
    try:
        await stop.wait()
    finally:
        await grpc_server.stop(grace=1.0)
    log.info("ABCI gRPC server stopped at height %d", server.app.height)
