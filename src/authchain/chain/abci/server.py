"""The ABCI 2.0 socket server that CometBFT drives (`authchain abci`).

CometBFT opens four connections to the application (consensus, mempool, query, snapshot) and
sends `tendermint.abci.Request` messages, each framed by its length as an unsigned varint; the
server answers each with a `Response` in order, and flushes its writes on `Flush`. Every
connection runs in its own task, so CheckTx and Query are answered while the consensus
connection waits on the ML service.

What each call does is `Application`'s business; this module only translates:
- CheckTx: code 0, or a non-zero code with `{"reason","detail","field"}` JSON in `log`.
- PrepareProposal: the application's selection (V_auth has run; failures are dropped), from
  CometBFT's mempool, or with `abci.mempool = "app"` from the app's own pool (CometBFT's
  mempool is off: `[mempool] type = "nop"`).
- ProcessProposal: ACCEPT, or REJECT for a definite failure. When V_auth cannot answer (ML
  service down, files not fetched yet) the validator waits, retrying, up to
  `unavailable_wait_secs`; then it votes REJECT for this round only. Nothing is recorded
  invalid, and the same txs may be proposed again.
- FinalizeBlock: a decided block must be executed, so an unavailable V_auth is retried until
  it answers (the validator falls behind meanwhile and catches up afterwards). Each tx result
  carries the event `authchain.tx_hash` (indexed), our BLAKE3 tx hash, so CometBFT's
  `tx_search` finds a tx by the id authchain's tools print.
- Commit: one atomic RocksDB write. Info: the last committed height and app hash, so
  CometBFT's handshake replays whatever the application lacks after a crash.

The proposer of a CometBFT block is a validator address (SHA-256 of its Ed25519 key, first 20
bytes). `authchain testnet` writes each validator's Ed25519 key into genesis.validators, so
the address maps to the authchain account that earns the block's fees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlparse

from authchain import __version__
from authchain.chain import codec
from authchain.chain.abci.proto import abci
from authchain.chain.app import Application, ProposalLimits
from authchain.chain.consensus.pool import proposal_order
from authchain.chain.errors import Rejected
from authchain.chain.state import Genesis
from authchain.chain.types import AccountId, Hash256, SigScheme, Transaction
from authchain.chain.validation.base import InvalidBlock
from authchain.chain.validation.ml import MlUnavailable

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest request accepted from CometBFT (a block's txs travel in one message)."""
TX_FRAMING = 6
"""Bytes CometBFT counts per tx besides the tx itself (protobuf tag and length)."""
RETRY_SECS = (0.5, 1.0, 2.0, 5.0)


def validator_accounts(genesis: Genesis) -> dict[bytes, AccountId]:
    """CometBFT validator address -> authchain account, for genesis' Ed25519 validators."""
    return {
        hashlib.sha256(v.public_key).digest()[:20]: v.account
        for v in genesis.validators
        if v.scheme is SigScheme.ED25519
    }


def parse_listen(addr: str) -> tuple[str, str | int]:
    """`tcp://host:port` or `unix:///path` -> ("tcp", host:port) / ("unix", path)."""
    url = urlparse(addr if "://" in addr else f"tcp://{addr}")
    if url.scheme == "unix":
        return "unix", url.path
    if url.scheme != "tcp" or not url.hostname or url.port is None:
        raise ValueError(f"expected tcp://HOST:PORT or unix:///PATH, got {addr!r}")
    return url.hostname, url.port


PIPELINE_DEPTH = 256
"""Requests read ahead on one connection while earlier ones are answered."""


class Clock(Protocol):
    """The time the server waits by: V_auth's retries and the unavailable wait."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real one."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AbciServer:
    """Serves one `Application` to one CometBFT node. `clock` is the system's unless a test
    passes one it advances itself."""

    def __init__(
        self,
        app: Application,
        *,
        unavailable_wait_secs: float = 20.0,
        app_mempool: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self.app_mempool = app_mempool
        """The app's pool holds the pending txs (`abci.mempool = "app"`): PrepareProposal
        proposes from it alone (CometBFT's mempool is off, so it sends none)."""
        self.unavailable_wait_secs = unavailable_wait_secs
        self.clock: Clock = clock or SystemClock()
        self._accounts = validator_accounts(app.genesis)
        self.stats = {"proposals_accepted": 0, "proposals_rejected": 0, "unavailable_waits": 0}
        app.extra_status = self.stats
        self._decoded: tuple[list[bytes], list[Transaction | Rejected]] = ([], [])
        """The last block's txs, as bytes and decoded: PrepareProposal's answer, or the
        proposal ProcessProposal judged, which the next call for the same bytes takes instead
        of decoding them again (the application then knows its run of those txs)."""

    async def serve(self, listen: str, stop: asyncio.Event) -> None:
        """Accept CometBFT's connections on `listen` until `stop` is set."""
        host, port = parse_listen(listen)
        if host == "unix":
            server = await asyncio.start_unix_server(self._connection, path=str(port))
        else:
            server = await asyncio.start_server(self._connection, host, int(port))
        log.info("ABCI server listening on %s (CometBFT's proxy_app)", listen)
        async with server:
            await stop.wait()
        log.info("ABCI server stopped at height %d", self.app.height)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read requests as they come (CometBFT pipelines CheckTx on its mempool connection)
        and answer them in order, in another task.

        CheckTx verifies a new tx's signature on the event loop. A worker thread per CheckTx
        (which could not verify in parallel anyway: the signature code holds the GIL) cost the
        app more CPU in thread hand-offs than it won back on a loaded node: 0.84-0.98 ms per
        committed tx against 0.69-0.71 inline, 1 validator, 6,000 ML-DSA-65 transfers."""
        peer = writer.get_extra_info("peername") or "unix socket"
        log.debug("CometBFT connected from %s", peer)
        queue: asyncio.Queue[abci.Request | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        answering = asyncio.create_task(self._answer(queue, writer))
        try:
            while True:
                request = await read_message(reader)
                if request is None:
                    break
                await queue.put(request)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.warning("ABCI connection from %s lost: %s", peer, exc)
        finally:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:  # the peer is gone: what is queued needs no answer
                answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            writer.close()

    async def _answer(
        self, queue: asyncio.Queue[abci.Request | None], writer: asyncio.StreamWriter
    ) -> None:
        """Answer queued requests in order until None; after a lost connection, keep taking
        them (unanswered), so the reader never waits on a full queue.

        Answers are written in batches: when no request is waiting, or on Flush (one write
        for a run of pipelined CheckTx answers, not one each). After each CheckTx the loop
        yields, so a flood of CheckTx on the mempool connection never holds up an answer on
        the consensus connection by more than one CheckTx (recheck included)."""
        lost = False
        out = bytearray()
        while (request := await queue.get()) is not None:
            if lost:
                continue
            response = await self.handle(request)
            kind = request.WhichOneof("value")
            out += frame(response.SerializeToString())
            if kind == "check_tx":
                await asyncio.sleep(0)
            if queue.empty() or kind == "flush":
                try:
                    writer.write(bytes(out))
                    out.clear()
                    if kind == "flush":
                        await writer.drain()
                except ConnectionError as exc:
                    log.warning("ABCI connection lost while answering: %s", exc)
                    lost = True
        if out and not lost:  # the reader stopped: the peer is gone, or about to be
            with contextlib.suppress(ConnectionError):
                writer.write(bytes(out))

    async def handle(self, request: abci.Request) -> abci.Response:
        """The response to one request (an `exception` response if the app failed)."""
        kind = request.WhichOneof("value")
        try:
            match kind:
                case "echo":
                    return abci.Response(echo=abci.ResponseEcho(message=request.echo.message))
                case "flush":
                    return abci.Response(flush=abci.ResponseFlush())
                case "info":
                    return abci.Response(info=self.info())
                case "init_chain":
                    return abci.Response(init_chain=self.init_chain(request.init_chain))
                case "check_tx":
                    return abci.Response(check_tx=self.check_tx(request.check_tx))
                case "query":
                    return abci.Response(query=self.query(request.query))
                case "prepare_proposal":
                    prepared = await self.prepare_proposal(request.prepare_proposal)
                    return abci.Response(prepare_proposal=prepared)
                case "process_proposal":
                    processed = await self.process_proposal(request.process_proposal)
                    return abci.Response(process_proposal=processed)
                case "finalize_block":
                    finalized = await self.finalize_block(request.finalize_block)
                    return abci.Response(finalize_block=finalized)
                case "commit":
                    await self.app.commit_async()
                    return abci.Response(commit=abci.ResponseCommit())
                case "extend_vote":
                    return abci.Response(extend_vote=abci.ResponseExtendVote())
                case "verify_vote_extension":
                    accept = abci.ResponseVerifyVoteExtension.ACCEPT
                    return abci.Response(
                        verify_vote_extension=abci.ResponseVerifyVoteExtension(status=accept)
                    )
                case "list_snapshots":
                    return abci.Response(list_snapshots=abci.ResponseListSnapshots())
                case "offer_snapshot":  # no state sync: a new validator replays blocks
                    reject = abci.ResponseOfferSnapshot.REJECT
                    return abci.Response(offer_snapshot=abci.ResponseOfferSnapshot(result=reject))
                case "load_snapshot_chunk":
                    return abci.Response(load_snapshot_chunk=abci.ResponseLoadSnapshotChunk())
                case "apply_snapshot_chunk":
                    abort = abci.ResponseApplySnapshotChunk.ABORT
                    return abci.Response(
                        apply_snapshot_chunk=abci.ResponseApplySnapshotChunk(result=abort)
                    )
        except Exception as exc:
            log.exception("ABCI %s failed", kind)
            return abci.Response(exception=abci.ResponseException(error=f"{kind}: {exc}"))
        return abci.Response(exception=abci.ResponseException(error=f"unknown request {kind}"))

    # --- the calls ----------------------------------------------------------------------------

    def info(self) -> abci.ResponseInfo:
        info = self.app.info()
        return abci.ResponseInfo(
            data="authchain",
            version=__version__,
            app_version=1,
            last_block_height=info.height,
            last_block_app_hash=bytes(info.app_hash) if info.height else b"",
        )

    def init_chain(self, request: abci.RequestInitChain) -> abci.ResponseInitChain:
        genesis = self.app.genesis
        if request.chain_id != genesis.chain_id:
            raise ValueError(
                f"CometBFT's chain id {request.chain_id!r} is not genesis.chain_id "
                f"{genesis.chain_id!r}: the CometBFT home and the chain config disagree"
            )
        theirs = {bytes(v.pub_key.ed25519) for v in request.validators}
        ours = {v.public_key for v in genesis.validators if v.scheme is SigScheme.ED25519}
        if theirs != ours:
            log.warning(
                "CometBFT's validators are not genesis.validators: fees of unknown proposers "
                "are burnt"
            )
        return abci.ResponseInitChain(app_hash=bytes(self.app.init_chain()))

    def check_tx(self, request: abci.RequestCheckTx) -> abci.ResponseCheckTx:
        recheck = request.type == abci.RECHECK
        try:
            tx = self.app.decode_tx(request.tx)
            self.app.check_tx(tx, recheck=recheck)
        except Rejected as exc:
            body = {"reason": str(exc.reason), "detail": exc.detail, "field": exc.field}
            return abci.ResponseCheckTx(code=1, log=json.dumps(body), codespace="authchain")
        return abci.ResponseCheckTx(code=0)

    def query(self, request: abci.RequestQuery) -> abci.ResponseQuery:
        code, value = self.app.query(request.path)
        return abci.ResponseQuery(code=code, value=value, height=self.app.height)

    async def prepare_proposal(
        self, request: abci.RequestPrepareProposal
    ) -> abci.ResponsePrepareProposal:
        raw_of: dict[int, bytes] = {}
        if self.app_mempool:
            if request.txs:
                log.warning(
                    "CometBFT proposed %d txs from its mempool, but abci.mempool = 'app': "
                    'they are left out (set [mempool] type = "nop" in its config.toml)',
                    len(request.txs),
                )
            candidates = self.app.pool.candidates()
        else:
            decoded: list[Transaction] = []
            for raw in request.txs:
                try:
                    tx = self.app.decode_tx(raw)
                except Rejected:
                    continue
                raw_of[id(tx)] = raw
                decoded.append(tx)
            candidates = proposal_order((tx, i) for i, tx in enumerate(decoded))  # mempool order
        limits = ProposalLimits(
            max_txs=self.app.config.max_block_txs,
            max_bytes=min(request.max_tx_bytes, self.app.config.max_block_size_bytes),
            tx_overhead=TX_FRAMING,
        )
        proposer = self.proposer(request.proposer_address)
        proposal = await self.app.prepare_proposal(candidates, request.height, proposer, limits)
        if proposal.dropped:
            log.info("proposal %d: dropped %d txs", request.height, len(proposal.dropped))
        txs = [raw_of.get(id(tx)) or codec.encode(tx) for tx in proposal.txs]
        self._decoded = (txs, list(proposal.txs))
        return abci.ResponsePrepareProposal(txs=txs)

    async def process_proposal(
        self, request: abci.RequestProcessProposal
    ) -> abci.ResponseProcessProposal:
        status = abci.ResponseProcessProposal
        txs: list[Transaction] = []
        for i, tx in enumerate(self._decode(request.txs)):
            if isinstance(tx, Rejected):
                return self._reject(request.height, f"undecodable tx {i}: {tx}")
            txs.append(tx)
        proposer = self.proposer(request.proposer_address)
        started = self.clock.monotonic()
        for attempt in range(1_000_000):
            try:
                await self.app.process_proposal(txs, request.height, proposer)
            except InvalidBlock as exc:
                return self._reject(request.height, str(exc))
            except MlUnavailable as exc:
                waited = self.clock.monotonic() - started
                if waited >= self.unavailable_wait_secs:
                    log.warning(
                        "proposal %d: V_auth still unavailable after %.0fs (%s): voting REJECT "
                        "for this round only; nothing is recorded invalid",
                        request.height, waited, exc,
                    )  # fmt: skip
                    self.stats["proposals_rejected"] += 1
                    return status(status=status.REJECT)
                self.stats["unavailable_waits"] += 1
                log.warning("proposal %d: V_auth unavailable, waiting: %s", request.height, exc)
                await self.clock.sleep(RETRY_SECS[min(attempt, len(RETRY_SECS) - 1)])
                continue
            self.stats["proposals_accepted"] += 1
            return status(status=status.ACCEPT)
        raise AssertionError("unreachable")

    def _reject(self, height: int, why: str) -> abci.ResponseProcessProposal:
        log.warning("proposal %d REJECTED: %s", height, why)
        self.stats["proposals_rejected"] += 1
        status = abci.ResponseProcessProposal
        return status(status=status.REJECT)

    async def finalize_block(
        self, request: abci.RequestFinalizeBlock
    ) -> abci.ResponseFinalizeBlock:
        txs = [None if isinstance(tx, Rejected) else tx for tx in self._decode(request.txs)]
        self._decoded = ([], [])
        proposer = self.proposer(request.proposer_address)
        attempt = 0
        while True:
            try:
                finalized = await self.app.finalize_block(txs, request.height, proposer)
                break
            except MlUnavailable as exc:
                log.warning(
                    "block %d is decided but V_auth is unavailable (%s): retrying; this "
                    "validator falls behind until the ML service answers", request.height, exc,
                )  # fmt: skip
                await self.clock.sleep(RETRY_SECS[min(attempt, len(RETRY_SECS) - 1)])
                attempt += 1
        results = []
        for raw, tx, result in zip(request.txs, txs, finalized.results, strict=True):
            attributes = [abci.EventAttribute(key="tx_hash", value=_tx_id(raw, tx), index=True)]
            if result.code:
                attributes.append(abci.EventAttribute(key="reason", value=str(result.reason)))
            results.append(
                abci.ExecTxResult(
                    code=result.code,
                    log=result.detail,
                    info=str(result.reason),
                    codespace="authchain" if result.code else "",
                    events=[abci.Event(type="authchain", attributes=attributes)],
                )
            )
        return abci.ResponseFinalizeBlock(tx_results=results, app_hash=bytes(finalized.app_hash))

    def _decode(self, raws: Sequence[bytes]) -> list[Transaction | Rejected]:
        """A block's txs decoded (or why bytes are not a tx): those decoded last time if the
        bytes are the same."""
        raws = list(raws)
        if raws == self._decoded[0]:
            return self._decoded[1]
        txs: list[Transaction | Rejected] = []
        for raw in raws:
            try:
                txs.append(self.app.decode_tx(raw))
            except Rejected as exc:
                txs.append(exc)
        self._decoded = (raws, txs)
        return txs

    def proposer(self, address: bytes) -> AccountId:
        """The account that earns a block's fees: the proposer's, or a burn address."""
        account = self._accounts.get(bytes(address))
        if account is None:
            return AccountId(Hash256(hashlib.sha256(b"authchain/burn" + address).digest()))
        return account


def _tx_id(raw: bytes, tx: Transaction | None) -> str:
    return str(codec.compute_tx_hash(tx)) if tx is not None else hashlib.sha256(raw).hexdigest()


# --- framing ----------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """`payload` prefixed by its length as an unsigned varint (protoio's delimited format)."""
    n = len(payload)
    head = bytearray()
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + payload


async def read_message(reader: asyncio.StreamReader) -> abci.Request | None:
    """The next request, or None at a clean end of the stream."""
    length = 0
    for shift in range(0, 64, 7):
        byte = await reader.read(1)
        if not byte:
            if shift == 0:
                return None
            raise asyncio.IncompleteReadError(b"", None)
        length |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            break
    else:
        raise ConnectionError("length prefix longer than 10 bytes")
    if length > MAX_MESSAGE_BYTES:
        raise ConnectionError(f"message of {length} bytes > {MAX_MESSAGE_BYTES}")
    request = abci.Request()
    request.ParseFromString(await reader.readexactly(length))
    return request
