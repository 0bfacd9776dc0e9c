"""Hypothesis on the two doors strangers knock on: decoding tx bytes, and CheckTx.

Whatever the bytes, decoding either gives a transaction or raises the chain's own error; and
CheckTx (through the ABCI server, which CometBFT feeds raw mempool bytes) answers a code,
never an exception, and admits nothing it should not.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authchain.chain import codec
from authchain.chain.abci.proto import abci
from authchain.chain.errors import ChainError
from authchain.chain.types import Transaction
from tests.support.abci import make_server
from tests.support.strategies import transactions

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_decoding_any_bytes_gives_a_tx_or_a_chain_error(raw: bytes) -> None:
    try:
        tx: Transaction = codec.decode(raw, Transaction)
    except ChainError:
        return
    assert codec.encode(tx) == raw  # only canonical bytes decode


def _mutations() -> st.SearchStrategy[bytes]:
    """A valid tx's bytes with a few bytes flipped, cut or appended."""

    def mutate(raw: bytes, where: int, byte: int, how: int) -> bytes:
        i = where % max(len(raw), 1)
        if how == 0:
            return raw[:i] + bytes([byte]) + raw[i + 1 :]
        if how == 1:
            return raw[:i]
        return raw + bytes([byte])

    return st.builds(
        mutate, transactions.map(codec.encode), st.integers(0, 10_000), st.integers(0, 255),
        st.integers(0, 2),
    )  # fmt: skip


async def _check(raw: bytes) -> abci.ResponseCheckTx:
    server = make_server()
    response = await server.handle(abci.Request(check_tx=abci.RequestCheckTx(tx=raw)))
    assert response.WhichOneof("value") == "check_tx", response  # never an exception answer
    return response.check_tx


@FUZZ
@given(st.one_of(st.binary(max_size=512), _mutations()))
async def test_check_tx_answers_every_input_with_a_code(raw: bytes) -> None:
    answer = await _check(raw)
    if answer.code:
        body = json.loads(answer.log)
        assert isinstance(body["reason"], str) and body["reason"]
    else:  # admitted: it must be a canonical, correctly signed tx of this chain
        tx: Transaction = codec.decode(raw, Transaction)
        assert codec.encode(tx) == raw


@FUZZ
@given(transactions)
async def test_random_well_formed_txs_are_refused_with_a_reason(tx: Transaction) -> None:
    answer = await _check(codec.encode(tx))  # random keys and signatures: nothing verifies
    assert answer.code != 0 and json.loads(answer.log)["reason"] in {
        "bad_signature", "unsigned_not_allowed", "bad_nonce", "fee_too_low",
        "insufficient_balance", "claim_below_floor", "aid_not_registered",
        "aid_already_registered", "nonce_too_far", "pending_spend_exceeds_balance",
        "balance_overflow",
    }  # fmt: skip


def test_a_number_where_an_id_belongs_is_a_decode_error_not_a_crash() -> None:
    """Found by the fuzzing above: the decode hook raised NotImplementedError (a 500 on
    POST /txs, an exception answer to CometBFT's CheckTx) for an id field holding a number."""
    import msgspec

    from authchain.chain.errors import DecodeError
    from tests.support.chain import register

    fields = msgspec.msgpack.decode(codec.encode(register(1, 0)))
    fields = [7 if isinstance(f, bytes) and len(f) == 32 else f for f in fields]
    raw = msgspec.msgpack.encode(fields)
    try:
        codec.decode(raw, Transaction)
    except DecodeError as exc:
        assert "expected bytes" in str(exc)
    else:
        raise AssertionError("decoded a tx whose ids are numbers")
