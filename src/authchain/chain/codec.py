"""Canonical bytes and hashing: the only place that produces bytes to hash or sign.

Encoding is msgpack of a `Record` as an array in field order (msgspec, `array_like`). msgspec
always writes the shortest integer form and float64 for floats, so one value has one encoding.
`decode` re-encodes what it read and refuses input whose bytes differ, so a non-canonical
(malleated) encoding can never be accepted under another encoding's hash.

Hashing is BLAKE3-256. Domain separation:
- transaction signing bytes = encode(["authchain/tx/v1", chain_id, tx with signature emptied]);
- block signing bytes = encode(["authchain/block/v1", chain_id, block_hash]);
- Merkle leaves and inner nodes are prefixed 0x00 and 0x01 (RFC 6962 §2.1), so an inner node
  can never pose as a leaf.

`docs/protocol.md` lists every encoding with golden vectors, checked by
`tests/unit/test_protocol_vectors.py`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, get_args

import blake3
import msgspec

from authchain.chain.errors import DecodeError
from authchain.chain.types import (
    AccountId,
    Aid,
    Block,
    BlockHash,
    EvidenceHash,
    Hash256,
    Header,
    Transaction,
    TxHash,
)
from authchain.chain.types.ids import HASH_LEN

T = TypeVar("T")

TX_DOMAIN = "authchain/tx/v1"
BLOCK_DOMAIN = "authchain/block/v1"
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Hash256):
        return bytes(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    # Build the id type without its length check: Record.__post_init__ checks the length and,
    # unlike this hook, knows the field's name for the error.
    if isinstance(kind, type) and issubclass(kind, Hash256) and isinstance(obj, bytes):
        return bytes.__new__(kind, obj)
    name = getattr(kind, "__name__", str(kind))
    raise msgspec.ValidationError(f"expected bytes for {name}, got {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def encode(value: Any) -> bytes:
    """The canonical bytes of `value` (a Record, or a tuple/list of encodable values)."""
    return _encoder.encode(value)


def decode(data: bytes, kind: type[T] | Any) -> T:
    """Decode canonical bytes into `kind`; raise `DecodeError` on anything else."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind, dec_hook=_dec_hook)
    try:
        value: T = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise DecodeError(f"not a valid {_type_name(kind)}: {exc}") from exc
    if encode(value) != bytes(data):
        raise DecodeError(f"not the canonical encoding of {_type_name(kind)}")
    return value


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return kind.__name__
    return " | ".join(getattr(a, "__name__", str(a)) for a in get_args(kind)) or str(kind)


def hash_bytes(data: bytes) -> Hash256:
    """BLAKE3-256 of `data`."""
    return Hash256(blake3.blake3(data).digest())


def compute_aid(artefact: bytes) -> Aid:
    """Artefact id of a model file's bytes."""
    return Aid(blake3.blake3(artefact).digest())


def compute_evidence_hash(evidence: bytes) -> EvidenceHash:
    """Evidence hash of an evidence file's bytes."""
    return EvidenceHash(blake3.blake3(evidence).digest())


def compute_account_id(public_key: bytes) -> AccountId:
    """Account id of a public key's raw bytes."""
    return AccountId(blake3.blake3(public_key).digest())


TX_HASH_MEMO_SIZE = 16_384
_tx_hashes: dict[int, tuple[Transaction, TxHash]] = {}
"""id(tx) -> (tx, its hash), the newest `TX_HASH_MEMO_SIZE`. A tx's hash is asked for ~8 times
on its way (pool, signature cache, proposal, execution, index) and costs ~5 µs for an ML-DSA
tx. The entry holds the tx itself, so its id cannot be reused while the entry lives, and txs
are frozen structs. Reads take no lock (one dict lookup is atomic) and do not reorder: the
oldest entry goes first, which is the order txs pass through a node."""
_tx_hashes_lock = threading.Lock()


def compute_tx_hash(tx: Transaction) -> TxHash:
    """Hash of a transaction's canonical bytes, signature included."""
    hit = _tx_hashes.get(id(tx))
    if hit is not None and hit[0] is tx:
        return hit[1]
    tx_hash = TxHash(blake3.blake3(encode(tx)).digest())
    _remember_tx_hash(tx, tx_hash)
    return tx_hash


def _remember_tx_hash(tx: Transaction, tx_hash: TxHash) -> None:
    with _tx_hashes_lock:
        _tx_hashes[id(tx)] = (tx, tx_hash)
        while len(_tx_hashes) > TX_HASH_MEMO_SIZE:
            del _tx_hashes[next(iter(_tx_hashes))]


def decode_tx(data: bytes) -> Transaction:
    """`decode(data, Transaction)`, remembering the tx's hash: `data` is its canonical
    encoding (decode checks it), so the hash is `data`'s."""
    tx: Transaction = decode(data, Transaction)
    _remember_tx_hash(tx, TxHash(blake3.blake3(data).digest()))
    return tx


def compute_block_hash(header: Header) -> BlockHash:
    """Hash of a block's canonical header bytes."""
    return BlockHash(blake3.blake3(encode(header)).digest())


def tx_signing_bytes(tx: Transaction, chain_id: str) -> bytes:
    """What a transaction's signer signs: domain tag, chain id, the tx with `signature` emptied."""
    unsigned = msgspec.structs.replace(tx, signature=b"")
    return encode((TX_DOMAIN, chain_id, unsigned))


def block_signing_bytes(block_hash: BlockHash, chain_id: str) -> bytes:
    """What a block's proposer signs: domain tag, chain id, the block hash."""
    return encode((BLOCK_DOMAIN, chain_id, block_hash))


def compute_tx_root(txs: Sequence[Transaction]) -> Hash256:
    """Merkle root over the hashes of `txs`, in block order."""
    return merkle_root([compute_tx_hash(tx) for tx in txs])


def decode_block(data: bytes) -> Block:
    """Decode a block's canonical bytes."""
    return decode(data, Block)


# --- Merkle tree (RFC 6962 §2.1; proof verification as in RFC 9162 §2.1.3.2) -----------------


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaves: Sequence[bytes], h: Callable[[bytes], bytes]) -> bytes:
    if len(leaves) == 1:
        return h(_LEAF_PREFIX + leaves[0])
    k = _split(len(leaves))
    return h(_NODE_PREFIX + _subtree_root(leaves[:k], h) + _subtree_root(leaves[k:], h))


def merkle_root(leaves: Sequence[bytes], *, sha256: bool = False) -> Hash256:
    """Root of the Merkle tree over `leaves` (BLAKE3; SHA-256 with `sha256`, as CometBFT's
    data_hash); the empty tree's root is the hash of nothing."""
    h = _sha256 if sha256 else _blake3
    if not leaves:
        return Hash256(h(b""))
    return Hash256(_subtree_root(leaves, h))


def merkle_proof(leaves: Sequence[bytes], index: int, *, sha256: bool = False) -> list[Hash256]:
    """Audit path for `leaves[index]`, from the leaf's sibling up to the root's child (BLAKE3;
    SHA-256 with `sha256`)."""
    h = _sha256 if sha256 else _blake3
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} out of range for {len(leaves)} leaves")
    path: list[Hash256] = []
    lo, hi = 0, len(leaves)
    siblings: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(_subtree_root(leaves[lo + k : hi], h))
            hi = lo + k
        else:
            siblings.append(_subtree_root(leaves[lo : lo + k], h))
            lo = lo + k
    for sibling in reversed(siblings):
        path.append(Hash256(sibling))
    return path


def verify_merkle_proof(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    *,
    sha256: bool = False,
) -> bool:
    """Whether `proof` shows `leaf` at `index` in a tree of `size` leaves with `root`.

    authchain's tx_root hashes with BLAKE3; CometBFT's data_hash is the same RFC 6962 tree
    with SHA-256 (`sha256=True`) over the SHA-256 hashes of the txs."""
    if not 0 <= index < size or any(len(p) != HASH_LEN for p in proof):
        return False
    h = _sha256 if sha256 else _blake3
    fn, sn = index, size - 1
    node = h(_LEAF_PREFIX + leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = h(_NODE_PREFIX + sibling + node)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = h(_NODE_PREFIX + node + sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == bytes(root)
