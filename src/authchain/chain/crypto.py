"""Keys and signatures: ML-DSA-65 (default; FIPS 204, the seed's Dilithium intent) and Ed25519.

An account is identified by BLAKE3 of its raw public key. A signed transaction carries its
`sig_scheme` and `public_key`; `verify_tx` checks that the key hashes to the signer's account and
that the signature covers `codec.tx_signing_bytes(tx, chain_id)`, so a signature for one chain
is useless on another.

Key files are JSON `{"scheme", "private_key", "public_key", "account"}` (hex), written with mode
0600. The private key is the 32-byte seed both schemes generate keys from.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

import msgspec
from cachetools import LRUCache

from authchain import signing
from authchain.chain import codec
from authchain.chain.errors import SignatureError
from authchain.chain.types import AccountId, Block, SigScheme, Transaction, get_signer

DEFAULT_SCHEME = SigScheme.ML_DSA_65


def signature_size(scheme: SigScheme) -> int:
    """Bytes in one signature of `scheme`."""
    return signing.SIGNATURE_LEN[scheme]


_Tx = TypeVar("_Tx", bound=Transaction)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key with its scheme, public key and account id."""

    scheme: SigScheme
    seed: bytes
    public_key: bytes
    account: AccountId

    @classmethod
    def generate(cls, scheme: SigScheme = DEFAULT_SCHEME) -> Self:
        """A new random key pair."""
        return cls.from_seed(scheme, os.urandom(32))

    @classmethod
    def from_seed(cls, scheme: SigScheme, seed: bytes) -> Self:
        """The key pair determined by a 32-byte seed (deterministic: for dev keys and tests)."""
        try:
            public = signing.public_key(scheme, seed)
        except signing.BadSignature as exc:
            raise SignatureError(str(exc)) from exc
        return cls(scheme, seed, public, codec.compute_account_id(public))

    def sign(self, message: bytes) -> bytes:
        """Sign `message` with this key."""
        return signing.sign(self.scheme, self.seed, message)


def verify_signature(
    scheme: SigScheme, public_key: bytes, message: bytes, signature: bytes
) -> None:
    """Raise `SignatureError` unless `signature` by `public_key` over `message` verifies."""
    try:
        signing.verify(scheme, public_key, message, signature)
    except signing.BadSignature as exc:
        raise SignatureError(str(exc)) from exc


def sign_tx(tx: _Tx, key: KeyPair, chain_id: str) -> _Tx:
    """`tx` with `sig_scheme`, `public_key` and `signature` set by `key` for `chain_id`."""
    if get_signer(tx) != key.account:
        raise SignatureError(f"key for account {key.account} cannot sign for {get_signer(tx)}")
    with_key = msgspec.structs.replace(
        tx, sig_scheme=key.scheme, public_key=key.public_key, signature=b""
    )
    signature = key.sign(codec.tx_signing_bytes(with_key, chain_id))
    return msgspec.structs.replace(with_key, signature=signature)


def is_unsigned(tx: Transaction) -> bool:
    """Whether `tx` claims no signature (valid only under devnet impersonation)."""
    return tx.sig_scheme is SigScheme.UNSIGNED


VERIFIED_CACHE_SIZE = 100_000
_verified: LRUCache[tuple[bytes, str], bool] = LRUCache(maxsize=VERIFIED_CACHE_SIZE)
"""(tx hash, chain id) of txs whose signature verified. The tx hash covers the signature and
the public key, so a tampered copy has another hash and is verified afresh."""
_verified_lock = threading.Lock()
"""The cache is read and written from worker threads too (`chain/sigpool.py` verifies a
small batch in one)."""


def verify_tx(tx: Transaction, chain_id: str) -> None:
    """Raise `SignatureError` unless `tx` is properly signed by its signer for `chain_id`.

    Each tx is verified once per process (CheckTx, proposal, ProcessProposal and FinalizeBlock
    all ask): a verified (tx hash, chain id) is remembered in a bounded LRU."""
    if is_verified(tx, chain_id):
        return
    _verify_tx(tx, chain_id)
    note_verified(tx, chain_id)


def is_verified(tx: Transaction, chain_id: str) -> bool:
    """Whether `tx`'s signature for `chain_id` verified in this process (and is remembered)."""
    with _verified_lock:
        return (bytes(codec.compute_tx_hash(tx)), chain_id) in _verified


def note_verified(tx: Transaction, chain_id: str) -> None:
    """Remember that `tx`'s signature for `chain_id` verified (`chain/sigpool.py`'s workers
    verify in other processes; this one keeps the result)."""
    with _verified_lock:
        _verified[(bytes(codec.compute_tx_hash(tx)), chain_id)] = True


def verify_rate(scheme: SigScheme, seconds: float = 2.0) -> float:
    """Signatures of `scheme` one core verifies per second, measured now (the floor that the
    throughput benchmarks compare committed tx/s against)."""
    key = KeyPair.generate(scheme)
    message = b"authchain throughput floor" * 8
    signature = key.sign(message)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        verify_signature(scheme, key.public_key, message, signature)
        count += 1
    return count / (time.perf_counter() - started)


def preverify_txs(txs: Sequence[Transaction], chain_id: str) -> None:
    """Verify the signatures of `txs` into the cache, for a worker thread; a bad one is left
    for CheckTx, which verifies it again and names the reason."""
    for tx in txs:
        if not is_unsigned(tx):
            with contextlib.suppress(SignatureError):
                verify_tx(tx, chain_id)


def signature_check(tx: Transaction, chain_id: str) -> tuple[str, bytes, bytes, bytes]:
    """What verifying `tx`'s signature for `chain_id` takes, as `signing.verify`'s arguments
    (scheme, public key, signed message, signature); SignatureError if `tx` is unsigned or its
    public key is not its signer's."""
    if is_unsigned(tx):
        raise SignatureError("transaction is unsigned")
    if codec.compute_account_id(tx.public_key) != get_signer(tx):
        raise SignatureError("public key does not hash to the signer's account id")
    return tx.sig_scheme.value, tx.public_key, codec.tx_signing_bytes(tx, chain_id), tx.signature


def _verify_tx(tx: Transaction, chain_id: str) -> None:
    _, public_key, message, signature = signature_check(tx, chain_id)
    verify_signature(tx.sig_scheme, public_key, message, signature)


def sign_block(block: Block, key: KeyPair, chain_id: str) -> Block:
    """`block` signed by its proposer's `key`."""
    if block.header.proposer != key.account:
        raise SignatureError(
            f"key for account {key.account} cannot sign for proposer {block.header.proposer}"
        )
    block_hash = codec.compute_block_hash(block.header)
    signature = key.sign(codec.block_signing_bytes(block_hash, chain_id))
    return msgspec.structs.replace(block, signature=signature)


def verify_block_signature(
    block: Block, scheme: SigScheme, public_key: bytes, chain_id: str
) -> None:
    """Raise `SignatureError` unless the proposer's key signed this block for `chain_id`."""
    if codec.compute_account_id(public_key) != block.header.proposer:
        raise SignatureError("public key does not hash to the block's proposer")
    block_hash = codec.compute_block_hash(block.header)
    verify_signature(
        scheme, public_key, codec.block_signing_bytes(block_hash, chain_id), block.signature
    )


# --- key files -------------------------------------------------------------------------------


def write_key_file(path: Path, key: KeyPair, *, overwrite: bool = False) -> None:
    """Write `key` to `path`, readable and writable by its owner only (mode 0600)."""
    body = json.dumps(
        {
            "scheme": key.scheme.value,
            "private_key": key.seed.hex(),
            "public_key": key.public_key.hex(),
            "account": key.account.hex(),
        },
        indent=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask and ignored if the file existed
        out.write(body + "\n")


def read_key_file(path: Path) -> KeyPair:
    """Read a key file; raise `SignatureError` if it is malformed or inconsistent."""
    try:
        data = json.loads(path.read_text())
        scheme = SigScheme(data["scheme"])
        key = KeyPair.from_seed(scheme, bytes.fromhex(data["private_key"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"cannot read key file {path}: {exc}") from exc
    if data.get("account") not in (None, key.account.hex()):
        raise SignatureError(f"key file {path}: account does not match its private key")
    return key
