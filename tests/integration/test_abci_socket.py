"""The ABCI server on a real socket: pipelined requests, answered in order."""

from __future__ import annotations

import asyncio

from authchain.chain import codec, crypto
from authchain.chain.abci.proto import abci
from authchain.chain.abci.server import frame
from tests.support.abci import init, make_server
from tests.support.chain import CHAIN, OWNER, register
from tests.support.servers import free_port


async def test_pipelined_requests_are_answered_in_order_on_a_real_socket() -> None:
    """CometBFT pipelines CheckTx: 10 requests written at once, signatures verified ahead in
    worker threads, every answer in request order (the forged one refused)."""
    server = make_server()
    await init(server)
    stop = asyncio.Event()
    port = free_port()
    serving = asyncio.create_task(server.serve(f"tcp://127.0.0.1:{port}", stop))
    for _ in range(100):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.02)
    txs = [codec.encode(register(n, n)) for n in range(8)]
    forged = codec.encode(crypto.sign_tx(register(99, 8, signed=False), OWNER, CHAIN + "-x"))
    requests = [abci.Request(echo=abci.RequestEcho(message="hi"))]
    requests += [abci.Request(check_tx=abci.RequestCheckTx(tx=raw)) for raw in [*txs, forged]]
    requests.append(abci.Request(flush=abci.RequestFlush()))
    writer.write(b"".join(frame(r.SerializeToString()) for r in requests))
    await writer.drain()
    answers = []
    for _ in requests:
        raw = await read_response(reader)
        answers.append(raw)
    writer.close()
    stop.set()
    await serving
    assert [a.WhichOneof("value") for a in answers] == [r.WhichOneof("value") for r in requests]
    codes = [a.check_tx.code for a in answers[1:-1]]
    assert codes == [0] * 8 + [1]
    assert "bad_signature" in answers[-2].check_tx.log
    assert len(server.app.pool) == 8


async def read_response(reader: asyncio.StreamReader) -> abci.Response:
    """One length-prefixed (uvarint) Response, as CometBFT reads it."""
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    response = abci.Response()
    response.ParseFromString(await reader.readexactly(length))
    return response
