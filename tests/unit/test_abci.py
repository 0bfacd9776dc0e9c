"""The ABCI 2.0 server over the Application, message by message (verifier double: unit level).

The same calls CometBFT makes, in its order: Info, InitChain, CheckTx, PrepareProposal,
ProcessProposal, FinalizeBlock, Commit, Query; and the varint framing on a real stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest

from authchain.chain import app as app_module
from authchain.chain import codec, crypto, queries
from authchain.chain import state as state_module
from authchain.chain.abci import grpc_server
from authchain.chain.abci.proto import abci
from authchain.chain.abci.server import RETRY_SECS, frame, read_message
from authchain.chain.app import META_APP_HASH, META_HEIGHT, Application, ProposalLimits
from authchain.chain.config import ConsensusConfig
from authchain.chain.consensus.store import Commit
from authchain.chain.errors import StorageError
from authchain.chain.misbehaving import MisbehavingApplication, Misbehaviour
from authchain.chain.state import compute_state_root, genesis_state
from authchain.chain.storage import MemBlockStore
from authchain.chain.storage.rocksdb import RocksDbBlockStore
from authchain.chain.types import AccountId, Transaction, TxTransfer
from authchain.chain.validation import pipeline
from authchain.chain.validation.base import InvalidBlock
from authchain.chain.validation.ml import MlValidity
from tests.support.abci import ADDRESS, COMET_KEY, FakeClock, call, init, make_server
from tests.support.chain import (
    CHAIN,
    OWNER,
    VALIDATOR,
    FakeVerifier,
    aid,
    make_genesis,
    register,
)


async def test_a_block_goes_through_every_phase() -> None:
    server = make_server(FakeVerifier(failing={aid(2)}))
    info = (await call(server, info=abci.RequestInfo())).info
    assert info.last_block_height == 0 and info.last_block_app_hash == b""
    genesis_root = compute_state_root(sorted(genesis_state(server.app.genesis).items()))
    assert await init(server) == bytes(genesis_root)

    good, forged = codec.encode(register(1, 0)), codec.encode(register(2, 1))
    for raw in (good, forged):
        checked = (await call(server, check_tx=abci.RequestCheckTx(tx=raw))).check_tx
        assert checked.code == 0, checked.log
    prepared = await call(
        server,
        prepare_proposal=abci.RequestPrepareProposal(
            txs=[forged, good], max_tx_bytes=1 << 20, height=1, proposer_address=ADDRESS
        ),
    )
    assert list(prepared.prepare_proposal.txs) == [good]  # nonce order; the forgery dropped
    rejection = server.app.records.rejection(codec.compute_tx_hash(register(2, 1)))
    assert rejection is not None and rejection.reason == "watermark_not_found"

    status = abci.ResponseProcessProposal
    processed = await call(
        server,
        process_proposal=abci.RequestProcessProposal(
            txs=[good, forged], height=1, proposer_address=ADDRESS
        ),
    )
    assert processed.process_proposal.status == status.REJECT  # an answered V_auth failure
    processed = await call(
        server,
        process_proposal=abci.RequestProcessProposal(
            txs=[good], height=1, proposer_address=ADDRESS
        ),
    )
    assert processed.process_proposal.status == status.ACCEPT

    finalized = (
        await call(
            server,
            finalize_block=abci.RequestFinalizeBlock(
                txs=[good], height=1, proposer_address=ADDRESS
            ),
        )
    ).finalize_block
    assert [r.code for r in finalized.tx_results] == [0]
    event = finalized.tx_results[0].events[0]
    assert event.type == "authchain" and event.attributes[0].key == "tx_hash"
    assert event.attributes[0].value == str(codec.compute_tx_hash(register(1, 0)))
    assert server.app.height == 0  # nothing is written before Commit
    await call(server, commit=abci.RequestCommit())
    info = (await call(server, info=abci.RequestInfo())).info
    assert info.last_block_height == 1 and info.last_block_app_hash == finalized.app_hash

    # the forgery stays dropped on recheck, so CometBFT evicts it from its mempool
    recheck = abci.RequestCheckTx(tx=forged, type=abci.RECHECK)
    answer = (await call(server, check_tx=recheck)).check_tx
    assert answer.code != 0 and json.loads(answer.log)["reason"] == "watermark_not_found"

    query = (await call(server, query=abci.RequestQuery(path=f"/artefacts/{aid(1)}"))).query
    assert query.code == 0 and json.loads(query.value)["owner"] == str(OWNER.account)
    tx_hash = codec.compute_tx_hash(register(1, 0))
    query = (await call(server, query=abci.RequestQuery(path=f"/txs/{tx_hash}"))).query
    assert json.loads(query.value) == {"status": "committed", "height": 1, "index": 0}
    query = (await call(server, query=abci.RequestQuery(path="/accounts/zz"))).query
    assert query.code == 1 and json.loads(query.value)["field"] == "account"
    # the proposer's fees go to the account of its CometBFT key
    account = json.loads(
        (
            await call(server, query=abci.RequestQuery(path=f"/accounts/{COMET_KEY.account}"))
        ).query.value
    )
    assert account["account"] == str(COMET_KEY.account)


async def test_check_tx_names_the_reason() -> None:
    server = make_server()
    await init(server)
    bad = codec.encode(crypto.sign_tx(register(1, 0, signed=False), OWNER, CHAIN + "-other"))
    answer = (await call(server, check_tx=abci.RequestCheckTx(tx=bad))).check_tx
    assert answer.code != 0 and json.loads(answer.log)["reason"] == "bad_signature"
    answer = (await call(server, check_tx=abci.RequestCheckTx(tx=b"\x01\x02"))).check_tx
    assert answer.code != 0 and json.loads(answer.log)["reason"] == "invalid_tx"


async def test_unavailable_verifier_never_records_anything_invalid() -> None:
    verifier = FakeVerifier(down=True)
    clock = FakeClock()
    server = make_server(verifier, wait=20.0, clock=clock)
    await init(server)
    raw = codec.encode(register(1, 0))
    assert (await call(server, check_tx=abci.RequestCheckTx(tx=raw))).check_tx.code == 0
    prepared = await call(
        server,
        prepare_proposal=abci.RequestPrepareProposal(
            txs=[raw], max_tx_bytes=1 << 20, height=1, proposer_address=ADDRESS
        ),
    )
    assert list(prepared.prepare_proposal.txs) == []  # left out, still pooled
    assert codec.compute_tx_hash(register(1, 0)) in server.app.pool
    processed = await call(
        server,
        process_proposal=abci.RequestProcessProposal(txs=[raw], height=1, proposer_address=ADDRESS),
    )
    # after the 20 s wait, retrying all along: a vote against this round's proposal, and no
    # record of anything invalid
    assert processed.process_proposal.status == abci.ResponseProcessProposal.REJECT
    assert 20.0 <= clock.now < 20.0 + max(RETRY_SECS)
    assert server.stats["unavailable_waits"] == len(clock.sleeps) > 4
    assert server.app.records.rejection(codec.compute_tx_hash(register(1, 0))) is None
    # a decided block waits for the verifier instead of guessing, however long that takes
    request = abci.RequestFinalizeBlock(txs=[raw], height=1, proposer_address=ADDRESS)
    finalize = asyncio.create_task(call(server, finalize_block=request))
    waiting_since = clock.now
    while clock.now < waiting_since + 600:  # ten minutes of retries
        await asyncio.sleep(0)
    assert not finalize.done()
    verifier.down = False
    finalized = (await asyncio.wait_for(finalize, 10)).finalize_block
    assert [r.code for r in finalized.tx_results] == [0]


def test_misbehaviour_switch_is_refused_outside_test_chains() -> None:
    ml = MlValidity(FakeVerifier())
    with pytest.raises(Misbehaviour, match="test chains"):
        MisbehavingApplication(MemBlockStore(), make_genesis(), ConsensusConfig(), ml)
    genesis = dataclasses.replace(make_genesis(), chain_id="authchain-testnet")
    app = MisbehavingApplication(MemBlockStore(), genesis, ConsensusConfig(), ml)
    assert queries.status(app)["misbehaving"] is True
    assert (
        queries.status(Application(MemBlockStore(), genesis, ConsensusConfig(), ml))["misbehaving"]
        is False
    )


async def test_the_misbehaving_app_skips_v_auth_in_proposals_but_not_in_finalize() -> None:
    genesis = dataclasses.replace(make_genesis(), chain_id="authchain-testnet")
    verifier = FakeVerifier(failing={aid(1)})
    forged = crypto.sign_tx(
        msgspec.structs.replace(register(1, 0), signature=b""), OWNER, genesis.chain_id
    )
    byzantine = MisbehavingApplication(
        MemBlockStore(), genesis, ConsensusConfig(), MlValidity(verifier)
    )
    byzantine.init_chain()
    byzantine.extra_status = {}  # as the ABCI server does, with its own counters
    limits = ProposalLimits(max_txs=10, max_bytes=10**6)
    proposal = await byzantine.prepare_proposal([forged], 1, VALIDATOR.account, limits)
    assert proposal.txs == [forged] and verifier.calls == 0
    assert byzantine.extra_status["unverified_claims_proposed"] == 1
    await byzantine.process_proposal([forged], 1, VALIDATOR.account)  # accepted unverified
    assert verifier.calls == 0
    honest = Application(MemBlockStore(), genesis, ConsensusConfig(), MlValidity(verifier))
    honest.init_chain()
    with pytest.raises(InvalidBlock, match="ml_auth_failed"):
        await honest.process_proposal([forged], 1, VALIDATOR.account)
    finalized = await byzantine.finalize_block([forged], 1, VALIDATOR.account)
    assert [r.reason for r in finalized.results] == ["ml_auth_failed"]  # same app hash as honest


async def test_finalize_takes_the_run_of_the_proposal_it_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FinalizeBlock of the very proposal this node accepted takes ProcessProposal's pipeline
    run instead of running the block again; another block, or the same txs from another
    proposer, is run afresh. Either way the result is that of a node that saw no proposal."""
    runs: list[int] = []
    run_block_txs = pipeline.run_block_txs

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(len(args[1]))
        return run_block_txs(*args, **kwargs)

    monkeypatch.setattr(app_module, "run_block_txs", counting)

    def node() -> Application:
        app = Application(
            MemBlockStore(), make_genesis(), ConsensusConfig(), MlValidity(FakeVerifier())
        )
        app.init_chain()
        return app

    def pay(nonce: int) -> TxTransfer:
        transfer = TxTransfer(OWNER.account, VALIDATOR.account, 5, 0, nonce)
        return crypto.sign_tx(transfer, OWNER, CHAIN)

    fresh, seen = node(), node()
    # with claims: V_auth's verdicts must match too
    block: list[Transaction] = [register(1, 0), pay(1), register(2, 2)]
    expected = await fresh.finalize_block(block, 1, VALIDATOR.account)
    await seen.process_proposal(block, 1, VALIDATOR.account)
    runs.clear()
    finalized = await seen.finalize_block(block, 1, VALIDATOR.account)
    assert runs == []
    assert finalized.app_hash == expected.app_hash and finalized.results == expected.results
    fresh.commit()
    seen.commit()

    for accepted, decided, proposer in [
        ([pay(3), pay(4)], [pay(3)], VALIDATOR.account),  # another block was decided
        ([pay(3)], [pay(3)], COMET_KEY.account),  # the same txs, but the fees go elsewhere
    ]:
        await seen.process_proposal(accepted, 2, VALIDATOR.account)
        runs.clear()
        finalized = await seen.finalize_block(decided, 2, proposer)
        assert runs == [len(decided)]
        expected = await fresh.finalize_block(decided, 2, proposer)
        assert finalized.app_hash == expected.app_hash
        seen.discard()
        fresh.discard()


async def test_the_proposer_judges_its_own_proposal_of_transfers_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PrepareProposal runs the pipeline on what it packs; when that run is of exactly the
    proposal's txs and they hold no claims, the proposer's ProcessProposal and FinalizeBlock of
    the same bytes take it (and the txs already decoded) instead of judging them again. Another
    validator judges the block once and executes it without decoding it again; both reach the
    same app hash. A proposal with a claim is judged again: V_auth must answer for it."""
    judged: list[Transaction] = []
    process_tx = state_module.process_tx

    def counting(view: Any, tx: Transaction, *args: Any) -> None:
        judged.append(tx)
        process_tx(view, tx, *args)

    monkeypatch.setattr(pipeline, "process_tx", counting)
    proposer, other = make_server(app_mempool=True), make_server()
    decoded: list[bytes] = []
    for server in (proposer, other):
        await init(server)
        decode_tx = server.app.decode_tx

        def counting_decode(raw: bytes, decode_tx: Any = decode_tx) -> Any:
            decoded.append(raw)
            return decode_tx(raw)

        monkeypatch.setattr(server.app, "decode_tx", counting_decode)

    def pay(nonce: int) -> TxTransfer:
        return crypto.sign_tx(
            TxTransfer(OWNER.account, VALIDATOR.account, 5, 0, nonce), OWNER, CHAIN
        )

    async def phases(server: Any, height: int, txs: list[bytes]) -> list[tuple[int, int]]:
        """(txs judged, txs decoded) in ProcessProposal and in FinalizeBlock."""
        counts = []
        for phase in ("process_proposal", "finalize_block"):
            judged.clear()
            decoded.clear()
            kind = (
                abci.RequestProcessProposal
                if phase == "process_proposal"
                else abci.RequestFinalizeBlock
            )
            response = await call(
                server, **{phase: kind(txs=txs, height=height, proposer_address=ADDRESS)}
            )
            if phase == "process_proposal":
                assert response.process_proposal.status == abci.ResponseProcessProposal.ACCEPT
            counts.append((len(judged), len(decoded)))
        return counts

    transfers = [pay(n) for n in range(3)]
    await proposer.app.admit(transfers)
    request = abci.RequestPrepareProposal(max_tx_bytes=1 << 20, height=1, proposer_address=ADDRESS)
    judged.clear()
    block = list((await call(proposer, prepare_proposal=request)).prepare_proposal.txs)
    assert block == [codec.encode(tx) for tx in transfers] and len(judged) == 3
    assert await phases(proposer, 1, block) == [(0, 0), (0, 0)]
    assert await phases(other, 1, block) == [(3, 3), (0, 0)]
    for server in (proposer, other):
        await call(server, commit=abci.RequestCommit())
    assert proposer.app.info() == other.app.info()

    await proposer.app.admit([register(1, 3)])
    request = abci.RequestPrepareProposal(max_tx_bytes=1 << 20, height=2, proposer_address=ADDRESS)
    block = list((await call(proposer, prepare_proposal=request)).prepare_proposal.txs)
    assert block == [codec.encode(register(1, 3))]
    (judged_in_process, _), _ = await phases(proposer, 2, block)
    assert judged_in_process > 0


async def test_init_chain_refuses_another_chain_id() -> None:
    server = make_server()
    response = await call(server, init_chain=abci.RequestInitChain(chain_id="someone-else"))
    assert response.WhichOneof("value") == "exception"
    assert "chain id" in response.exception.error


async def test_framing_round_trips_on_a_stream() -> None:
    request = abci.Request(check_tx=abci.RequestCheckTx(tx=b"x" * 300))  # a 2-byte varint
    payload = request.SerializeToString()
    reader = asyncio.StreamReader()
    reader.feed_data(
        frame(payload) + frame(abci.Request(flush=abci.RequestFlush()).SerializeToString())
    )
    reader.feed_eof()
    first = await read_message(reader)
    assert first is not None and first.check_tx.tx == b"x" * 300
    second = await read_message(reader)
    assert second is not None and second.WhichOneof("value") == "flush"
    assert await read_message(reader) is None
    assert frame(b"\0" * 300)[:2] == bytes([0xAC, 0x02])


async def test_a_decided_block_with_a_forged_claim_does_not_put_it_in_state() -> None:
    """Even if a faulty 2/3 decided such a block, FinalizeBlock verifies and skips the claim."""
    server = make_server(FakeVerifier(failing={aid(2)}))
    await init(server)
    good, forged = codec.encode(register(1, 0)), codec.encode(register(2, 1))
    decided = abci.RequestFinalizeBlock(txs=[good, forged], height=1, proposer_address=ADDRESS)
    finalized = (await call(server, finalize_block=decided)).finalize_block
    assert [r.code for r in finalized.tx_results] == [0, 1]
    assert finalized.tx_results[1].info == "ml_auth_failed"
    await call(server, commit=abci.RequestCommit())
    assert queries.artefact_public(server.app, aid(1)) is not None
    assert queries.artefact_public(server.app, aid(2)) is None


def test_a_store_without_a_tree_gets_one_built_and_checked(tmp_path: Path) -> None:
    """A data directory from before the state tree: its tree is built once at open, and must
    give the app hash the directory committed; otherwise the app refuses to open it."""
    ml = MlValidity(FakeVerifier())
    genesis = dataclasses.replace(
        make_genesis(), accounts=tuple((AccountId(bytes([i]) * 32), 10 + i) for i in range(50))
    )
    state = genesis_state(genesis)
    store = RocksDbBlockStore(tmp_path / "db")
    store.commit(
        Commit(state=dict(state), meta={META_HEIGHT: (3).to_bytes(8, "big"),
                                        META_APP_HASH: compute_state_root(state.items())})
    )  # fmt: skip
    app = Application(store, genesis, ConsensusConfig(), ml)
    assert app.tree.root() == compute_state_root(state.items()) == app.info().app_hash
    store.close()
    store = RocksDbBlockStore(tmp_path / "db2")
    store.commit(Commit(state=dict(state), meta={META_HEIGHT: b"\0" * 8, META_APP_HASH: b"x" * 32}))
    with pytest.raises(StorageError, match="delete it"):
        Application(store, genesis, ConsensusConfig(), ml)
    store.close()


class RecordingWriter:
    """A connection's writing end: what each write carried, and how many CheckTx the server
    had answered by then."""

    def __init__(self, checked: list[int]) -> None:
        self.checked = checked
        self.writes: list[tuple[bytes, int]] = []

    def write(self, data: bytes) -> None:
        self.writes.append((data, len(self.checked)))

    async def drain(self) -> None:
        await asyncio.sleep(0)


async def test_a_flood_of_checktx_delays_an_answer_to_consensus_by_one_checktx_at_most() -> None:
    """CometBFT's mempool connection has 300 CheckTx read ahead when its consensus connection
    asks for Info. The consensus answer goes out after at most one more CheckTx, and the 300
    CheckTx answers go out in one write, in order."""
    server = make_server()
    await init(server)
    checked: list[int] = []
    answer_check_tx = server.check_tx

    def counting(request: abci.RequestCheckTx) -> abci.ResponseCheckTx:
        checked.append(1)
        return answer_check_tx(request)

    server.check_tx = counting  # type: ignore[method-assign]
    mempool: asyncio.Queue[abci.Request | None] = asyncio.Queue()
    for i in range(300):  # unsigned transfers of 0 from 300 accounts (the test genesis)
        tx = TxTransfer(AccountId(i.to_bytes(4, "big") * 8), VALIDATOR.account, 0, 0, 0)
        request = abci.RequestCheckTx(tx=codec.encode(tx))
        mempool.put_nowait(abci.Request(check_tx=request))
    mempool.put_nowait(None)
    consensus: asyncio.Queue[abci.Request | None] = asyncio.Queue()
    consensus.put_nowait(abci.Request(info=abci.RequestInfo()))
    consensus.put_nowait(abci.Request(flush=abci.RequestFlush()))
    consensus.put_nowait(None)
    to_mempool, to_consensus = RecordingWriter(checked), RecordingWriter(checked)
    await asyncio.gather(
        server._answer(mempool, to_mempool),  # type: ignore[arg-type]
        server._answer(consensus, to_consensus),  # type: ignore[arg-type]
    )
    [(_, answered_by)] = to_consensus.writes
    assert answered_by <= 1
    [(data, _)] = to_mempool.writes
    codes = []
    while data:  # varint-framed Responses
        length, shift, i = 0, 0, 0
        while True:
            length |= (data[i] & 0x7F) << shift
            shift, i = shift + 7, i + 1
            if data[i - 1] < 0x80:
                break
        response = abci.Response.FromString(data[i : i + length])
        assert response.WhichOneof("value") == "check_tx"
        codes.append(response.check_tx.code)
        data = data[i + length :]
    assert len(codes) == 300 == len(checked)
    assert codes[:10] == [0] * 10 and set(codes[10:]) == {1}  # the test pool holds 10


# --- the gRPC transport (abci.transport = "grpc") ----------------------------------------------


class _Aborted(Exception):
    """What `ServicerContext.abort` raises, as grpc.aio's does, ending the call."""


@dataclasses.dataclass
class _Context:
    aborted: list[tuple[grpc.StatusCode, str]] = dataclasses.field(default_factory=list)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted.append((code, details))
        raise _Aborted(details)


def test_the_grpc_service_answers_every_method_cometbft_calls() -> None:
    service = abci.DESCRIPTOR.services_by_name["ABCI"]
    assert service.full_name == grpc_server.SERVICE
    handlers = grpc_server.method_handlers(make_server())
    assert set(handlers) == {method.name for method in service.methods}
    for method in service.methods:  # each carries the Request/Response field of its type
        field = grpc_server.METHODS[method.name]
        assert abci.Request.DESCRIPTOR.fields_by_name[field].message_type == method.input_type
        assert abci.Response.DESCRIPTOR.fields_by_name[field].message_type == method.output_type


async def test_the_grpc_handlers_answer_as_the_socket_server_does() -> None:
    """Bytes in and out, as grpc.aio hands them over: the same answers as `AbciServer.handle`,
    and an app failure ends the call with INTERNAL, naming it."""
    server, twin = make_server(), make_server()
    handlers = grpc_server.method_handlers(server)
    context = _Context()

    async def invoke(method: str, message: Any) -> Any:
        handler = handlers[method]
        request = handler.request_deserializer(message.SerializeToString())
        answer = await handler.unary_unary(request, context)
        response_type = type(getattr(abci.Response(), grpc_server.METHODS[method]))
        return response_type.FromString(handler.response_serializer(answer))

    init_chain = abci.RequestInitChain(chain_id=CHAIN)
    assert (await invoke("InitChain", init_chain)).app_hash == await init(twin)
    good = codec.encode(register(1, 0))
    bad = codec.encode(crypto.sign_tx(register(1, 0, signed=False), OWNER, CHAIN + "-other"))
    for raw in (good, bad):
        request = abci.RequestCheckTx(tx=raw)
        assert await invoke("CheckTx", request) == (await call(twin, check_tx=request)).check_tx
    refused = await invoke("CheckTx", abci.RequestCheckTx(tx=bad))
    assert refused.code != 0 and json.loads(refused.log)["reason"] == "bad_signature"
    query = abci.RequestQuery(path=f"/accounts/{OWNER.account}")
    assert await invoke("Query", query) == (await call(twin, query=query)).query
    assert (await invoke("Info", abci.RequestInfo())).data == "authchain"
    with pytest.raises(_Aborted):
        await invoke("InitChain", abci.RequestInitChain(chain_id="someone-else"))
    [(code, details)] = context.aborted
    assert code == grpc.StatusCode.INTERNAL and "chain id" in details


async def test_where_the_app_holds_the_txs_it_proposes_from_its_own_pool() -> None:
    """`abci.mempool = "app"`: CometBFT's mempool is off (`type = "nop"`), so PrepareProposal
    gets no txs and proposes the app's pool, admitted through `Application.admit` (the intake);
    a tx CometBFT sends anyway is left out. Commit waits for a pool write in flight (a batch
    admitted meanwhile) instead of failing, and removes what the block included, durably."""
    server = make_server(app_mempool=True)
    await init(server)
    app = server.app
    pooled = [register(1, 0), register(2, 1)]
    assert await app.admit(pooled) == [codec.compute_tx_hash(tx) for tx in pooled]
    stray = codec.encode(register(3, 2))  # CometBFT's mempool was left on by mistake
    request = abci.RequestPrepareProposal(
        txs=[stray], max_tx_bytes=1 << 20, height=1, proposer_address=ADDRESS
    )
    prepared = (await call(server, prepare_proposal=request)).prepare_proposal
    assert list(prepared.txs) == [codec.encode(tx) for tx in pooled]
    finalize = abci.RequestFinalizeBlock(txs=prepared.txs, height=1, proposer_address=ADDRESS)
    finalized = (await call(server, finalize_block=finalize)).finalize_block
    assert [r.code for r in finalized.tx_results] == [0, 0]

    later = register(3, 2)
    admitting = asyncio.create_task(app.admit([later]))  # its pool write runs in a thread
    while app.pool._flush_task is None:
        await asyncio.sleep(0)
    committed = await call(server, commit=abci.RequestCommit())
    assert committed.WhichOneof("value") == "commit"  # not an exception answer
    assert await admitting == [codec.compute_tx_hash(later)]
    assert [codec.compute_tx_hash(tx) for tx in app.pool.candidates()] == [
        codec.compute_tx_hash(later)
    ]
    await app.pool.flush()
    assert [h for h, _ in app.store.pool_txs()] == [codec.compute_tx_hash(later)]
