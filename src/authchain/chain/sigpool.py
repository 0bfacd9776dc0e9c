"""Signature verification for a batch of txs, in worker processes.

pyca/cryptography's ML-DSA verification holds the GIL for its whole run (its `verify` makes no
`allow_threads` call): worker threads verify one signature at a time, taking turns with the
event loop, however many cores there are. Measured on the 2-core machine: a pure-Python loop
kept 87% of its speed beside a thread that verified without pause, and that thread made 560
verifications/s where one core makes 4,200. So a node that admits batches (`Application.admit`:
the embedded node's and, with `abci.mempool = "app"`, the app's intake) verifies them in
`workers` processes, started when its intake starts serving (`start`), or else on the first
batch that needs them.

Only the verdicts come back: a tx whose signature verified goes into `crypto`'s cache of
verified txs, and CheckTx, which runs next on the event loop, finds it there; a bad one is left
for CheckTx, which verifies it again and names the reason. So a worker can make admission
faster but never decides it. A worker that dies breaks the pool (as do workers that cannot
start): that batch is verified in a thread instead, and the next batch starts a new pool.
Workers are started with `spawn` (no copy of the node's threads and locks) and get SIGTERM when
the node dies (Linux's parent-death signal), so a SIGKILLed node leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from authchain import signing
from authchain.chain import crypto
from authchain.chain.errors import SignatureError
from authchain.chain.types import Transaction

log = logging.getLogger(__name__)

MAX_WORKERS = 4
"""Worker processes per node at most (a local testnet runs several nodes on one machine)."""
MIN_POOLED = 16
"""Fewer unverified txs than this are verified in a thread (a round trip to the workers costs
more than it saves), which at least lets the event loop take turns; a single one is left to
CheckTx."""

Item = tuple[str, bytes, bytes, bytes]
"""What a worker verifies: scheme, public key, signed message, signature."""


def verify_items(items: Sequence[Item]) -> list[bool]:
    """In a worker: whether each signature verifies."""
    verdicts = []
    for scheme, public_key, message, signature in items:
        try:
            signing.verify(scheme, public_key, message, signature)
            verdicts.append(True)
        except signing.BadSignature:
            verdicts.append(False)
    return verdicts


PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """A worker's initializer: SIGTERM when the node that started it dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


class SignaturePool:
    """Verifies batches of txs' signatures for `chain_id` in `workers` processes (by default
    one per core, up to `MAX_WORKERS`)."""

    def __init__(self, chain_id: str, workers: int | None = None) -> None:
        self.chain_id = chain_id
        self.workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
        self._executor: ProcessPoolExecutor | None = None

    async def preverify(self, txs: Sequence[Transaction]) -> None:
        """Put the txs whose signatures verify into `crypto`'s cache of verified txs."""
        pending: list[Transaction] = []
        items: list[Item] = []
        for tx in txs:
            if crypto.is_unsigned(tx) or crypto.is_verified(tx, self.chain_id):
                continue
            with contextlib.suppress(SignatureError):  # CheckTx names why
                items.append(crypto.signature_check(tx, self.chain_id))
                pending.append(tx)
        if len(pending) <= 1:
            return  # CheckTx verifies it, as it does a single submission
        if len(pending) < MIN_POOLED or self.workers < 2:
            await asyncio.to_thread(crypto.preverify_txs, pending, self.chain_id)
            return
        parts = [items[i :: self.workers] for i in range(self.workers)]
        loop = asyncio.get_running_loop()
        executor = self._pool()
        try:
            answers = await asyncio.gather(
                *(loop.run_in_executor(executor, verify_items, part) for part in parts)
            )
        except (BrokenProcessPool, OSError) as exc:  # a worker died, or none could start
            log.warning("signature workers failed (%s): this batch is verified here", exc)
            self.close()
            await asyncio.to_thread(crypto.preverify_txs, pending, self.chain_id)
            return
        for i, verdicts in enumerate(answers):
            for tx, ok in zip(pending[i :: self.workers], verdicts, strict=True):
                if ok:
                    crypto.note_verified(tx, self.chain_id)

    def start(self) -> None:
        """Start the workers now, so that the first batch does not wait while each starts an
        interpreter and imports the signature code (0.25-0.35 s each here). For a node that
        takes batches (an intake); otherwise they start with the first batch that needs them."""
        if self.workers < 2:
            return
        try:
            executor = self._pool()
            for _ in range(self.workers):  # `spawn` starts one worker per task, up to `workers`
                executor.submit(verify_items, [])
        except (BrokenProcessPool, OSError) as exc:  # no processes left, say: not fatal
            log.warning("signature workers could not start (%s): the first batch tries again", exc)
            self.close()

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with,
                initargs=(os.getpid(),),
            )
            log.info("verifying batches' signatures in %d worker processes", self.workers)
        return self._executor

    def close(self) -> None:
        """Stop the workers once they finish what they were given (a batch in flight from
        another request still gets its answer, or a broken pool); a new batch starts new
        ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
