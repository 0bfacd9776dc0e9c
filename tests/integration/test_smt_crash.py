"""The state tree across a SIGKILL: a process committing state and tree batches is killed at
a random moment, and the reopened RocksDB's tree agrees with its state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authchain.chain import smt
from authchain.chain.storage.rocksdb import RocksDbBlockStore

CRASH_WRITER = """
import random, sys
from authchain.chain import smt
from authchain.chain.consensus.store import Commit
from authchain.chain.storage.rocksdb import RocksDbBlockStore
store = RocksDbBlockStore(sys.argv[1])
tree = smt.StateTree(store.get_tree_node)
rng = random.Random(int(sys.argv[2]))
n = 0
while True:
    writes = {b"acct/%d" % rng.randrange(3000): (None if rng.random() < 0.2 else rng.randbytes(40))
              for _ in range(rng.randint(1, 300))}
    update = tree.update(writes)
    store.commit(Commit(state=writes, tree=update.nodes, meta={b"root": update.root}))
    tree.apply(update)
    n += 1
    if n == 5:
        print("ready", flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_mid_write_leaves_tree_and_state_in_agreement(seed: int, tmp_path: Path) -> None:
    """A process committing state + tree batches is killed at a random moment; the reopened
    store's tree root is the naive root of its state, and the root it last committed."""
    db = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(db), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.2, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    store = RocksDbBlockStore(db)
    try:
        root = smt.StateTree(store.get_tree_node).root()
        assert root == smt.root_of(store.iter_state())
        assert root == store.get_meta(b"root")
        assert sum(1 for _ in store.iter_state()) > 100
    finally:
        store.close()
