"""Batch signature verification in worker processes (`chain/sigpool.py`): the verdicts come
back into this process's cache, a dead worker costs one batch its speed and nothing else, and
the workers stop with the pool, and die with their node when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import msgspec

from authchain.chain import crypto, sigpool
from authchain.chain.types import SigScheme
from tests.integration.test_parent_death import alive
from tests.support.chain import CHAIN
from tests.unit.test_sigpool import forge, transfers


def workers(pool: sigpool.SignaturePool) -> set[int]:
    assert pool._executor is not None
    return {p.pid for p in pool._executor._processes.values() if p.pid is not None}


async def test_workers_verify_a_batch_and_only_the_good_are_remembered() -> None:
    txs = transfers(sigpool.MIN_POOLED + 8)
    forged = {3: forge(txs[3]), 10: forge(txs[10])}
    other_key = crypto.KeyPair.generate(SigScheme.ML_DSA_65)
    forged[12] = msgspec.structs.replace(txs[12], public_key=other_key.public_key)  # not its key
    batch = [forged.get(i, tx) for i, tx in enumerate(txs)]
    pool = sigpool.SignaturePool(CHAIN, workers=2)
    try:
        await pool.preverify(batch)
        started = workers(pool)
        assert len(started) == 2 and all(alive(pid) for pid in started)
        assert [crypto.is_verified(tx, CHAIN) for tx in batch] == [
            i not in forged for i in range(len(batch))
        ]
    finally:
        pool.close()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in started)


async def test_started_workers_are_up_before_the_first_batch_and_verify_it() -> None:
    """An intake starts its workers with its server (`start`): the first batch finds them."""
    pool = sigpool.SignaturePool(CHAIN, workers=2)
    try:
        pool.start()
        started = workers(pool)
        assert len(started) == 2 and all(alive(pid) for pid in started)
        batch = transfers(sigpool.MIN_POOLED, nonce=3)
        await pool.preverify(batch)
        assert workers(pool) == started  # the same workers did it
        assert all(crypto.is_verified(tx, CHAIN) for tx in batch)
    finally:
        pool.close()
    one = sigpool.SignaturePool(CHAIN, workers=1)
    one.start()  # one core: batches are verified in a thread, no worker to start
    assert one._executor is None


async def test_a_killed_worker_costs_one_batch_its_speed_and_the_next_gets_new_workers() -> None:
    pool = sigpool.SignaturePool(CHAIN, workers=2)
    try:
        await pool.preverify(transfers(sigpool.MIN_POOLED))
        first = workers(pool)
        os.kill(min(first), signal.SIGKILL)
        time.sleep(0.5)
        batch = transfers(sigpool.MIN_POOLED, nonce=1)
        await pool.preverify(batch)  # the broken pool: verified in this process instead
        assert all(crypto.is_verified(tx, CHAIN) for tx in batch)
        batch = transfers(sigpool.MIN_POOLED, nonce=2)
        await pool.preverify(batch)
        assert all(crypto.is_verified(tx, CHAIN) for tx in batch)
        assert workers(pool).isdisjoint(first)
    finally:
        pool.close()


NODE = """
import asyncio, sys
from authchain.chain import sigpool
from tests.unit.test_sigpool import transfers
pool = sigpool.SignaturePool("authchain-unit", workers=2)
asyncio.run(pool.preverify(transfers(sigpool.MIN_POOLED)))
from multiprocessing import resource_tracker
tracker = resource_tracker._resource_tracker._pid  # spawn's helper process, if it started one
pids = [p.pid for p in pool._executor._processes.values()] + ([tracker] if tracker else [])
print(" ".join(str(pid) for pid in pids), flush=True)
sys.stdin.read()
"""


def test_a_sigkilled_node_leaves_no_worker_behind() -> None:
    """Nor multiprocessing's resource tracker, which `spawn` starts beside them."""
    node = subprocess.Popen(
        [sys.executable, "-c", NODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        pids = [int(p) for p in node.stdout.readline().split()]
        assert len(pids) >= 2 and all(alive(pid) for pid in pids)
    finally:
        node.kill()
        node.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
