"""Batch signature verification (`chain/sigpool.py`), in this process: what a worker answers,
and the path without workers. The worker processes themselves are
`tests/integration/test_sigpool.py`'s."""

from __future__ import annotations

import msgspec
import pytest

from authchain.chain import codec, crypto, sigpool
from authchain.chain.errors import SignatureError
from authchain.chain.types import SigScheme, TxTransfer
from tests.support.chain import CHAIN


def transfers(count: int, nonce: int = 0) -> list[TxTransfer]:
    keys = [crypto.KeyPair.generate(SigScheme.ML_DSA_65) for _ in range(count)]
    return [crypto.sign_tx(TxTransfer(k.account, k.account, 1, 0, nonce), k, CHAIN) for k in keys]


def forge(tx: TxTransfer) -> TxTransfer:
    """The same signature over another amount."""
    return msgspec.structs.replace(tx, amount=tx.amount + 1)


def test_a_worker_answers_which_signatures_verify() -> None:
    good = transfers(1)[0]
    items = [
        (good.sig_scheme.value, good.public_key, codec.tx_signing_bytes(good, CHAIN), sig)
        for sig in (good.signature, good.signature[:-1] + b"\0", b"short")
    ]
    assert sigpool.verify_items(items) == [True, False, False]


async def test_without_workers_a_batch_is_verified_and_only_the_good_remembered() -> None:
    """Fewer than `MIN_POOLED` txs (or one worker) are verified in a thread: each good one is
    remembered as verified, a forged one is not, and verifying it again names why."""
    txs = transfers(3)
    forged = forge(txs[1])
    pool = sigpool.SignaturePool(CHAIN, workers=1)
    await pool.preverify([txs[0], forged, txs[2]])
    assert [crypto.is_verified(tx, CHAIN) for tx in (txs[0], forged, txs[2])] == [
        True,
        False,
        True,
    ]
    assert not crypto.is_verified(txs[0], "another-chain")
    with pytest.raises(SignatureError):
        crypto.verify_tx(forged, CHAIN)
    assert pool._executor is None  # no worker was started


class Unstartable:
    """An executor whose workers cannot start (no processes left, say)."""

    def submit(self, *args: object) -> None:
        raise OSError("fork: Resource temporarily unavailable")

    def shutdown(self, wait: bool = True) -> None:
        pass


async def test_workers_that_cannot_start_leave_the_batch_to_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    txs = transfers(sigpool.MIN_POOLED)
    pool = sigpool.SignaturePool(CHAIN, workers=2)
    monkeypatch.setattr(pool, "_executor", Unstartable())
    await pool.preverify(txs)
    assert all(crypto.is_verified(tx, CHAIN) for tx in txs)
    assert pool._executor is None  # the next batch tries to start workers again


def test_workers_that_cannot_start_with_the_intake_are_tried_again_by_the_first_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = sigpool.SignaturePool(CHAIN, workers=2)
    monkeypatch.setattr(pool, "_executor", Unstartable())
    pool.start()  # the node goes on serving; it only logs
    assert pool._executor is None
