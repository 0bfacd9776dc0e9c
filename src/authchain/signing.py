"""Signature primitives, shared by the chain and the ML service: ML-DSA-65 (FIPS 204) and
Ed25519, each key made from a 32-byte seed.

Schemes are named by their string (`"ml-dsa-65"`, `"ed25519"`), so the ML service, which never
loads the chain, signs and checks its peer requests with the same code as the chain's
transactions (`chain/crypto.py` wraps these with its `SigScheme` and account ids).
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

PUBLIC_KEY_LEN = {"ml-dsa-65": 1952, "ed25519": 32}
SIGNATURE_LEN = {"ml-dsa-65": 3309, "ed25519": 64}

PrivateKey = mldsa.MLDSA65PrivateKey | ed25519.Ed25519PrivateKey


class BadSignature(ValueError):
    """A signature, key or scheme that does not check; the message says which."""


def private_key(scheme: str, seed: bytes) -> PrivateKey:
    """The private key `seed` determines under `scheme`."""
    if len(seed) != 32:
        raise BadSignature(f"{scheme} private key seed must be 32 bytes, got {len(seed)}")
    if scheme == "ml-dsa-65":
        return mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
    if scheme == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    raise BadSignature(f"cannot make a private key for scheme {scheme!r}")


def public_key(scheme: str, seed: bytes) -> bytes:
    """The raw public key of `seed` under `scheme`."""
    return private_key(scheme, seed).public_key().public_bytes_raw()


def sign(scheme: str, seed: bytes, message: bytes) -> bytes:
    """`message` signed by the key `seed` determines."""
    return private_key(scheme, seed).sign(message)


def verify(scheme: str, key: bytes, message: bytes, signature: bytes) -> None:
    """Raise `BadSignature` unless `signature` by `key` over `message` verifies."""
    expected_key = PUBLIC_KEY_LEN.get(scheme)
    if expected_key is None:
        raise BadSignature(f"unsupported signature scheme {scheme!r}")
    if len(key) != expected_key:
        raise BadSignature(f"{scheme} public key must be {expected_key} bytes")
    if len(signature) != SIGNATURE_LEN[scheme]:
        raise BadSignature(f"{scheme} signature must be {SIGNATURE_LEN[scheme]} bytes")
    try:
        if scheme == "ml-dsa-65":
            _mldsa_public_key(key).verify(signature, message)
        else:
            ed25519.Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except InvalidSignature as exc:
        raise BadSignature("signature does not verify") from exc
    except ValueError as exc:  # malformed key bytes
        raise BadSignature(f"malformed {scheme} public key: {exc}") from exc


PUBLIC_KEY_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE_SIZE)
def _mldsa_public_key(key: bytes) -> mldsa.MLDSA65PublicKey:
    """The ML-DSA-65 public key of these bytes, loaded once for many signatures (a sender's
    txs come in runs): loading one costs about a twentieth of a verification. A malformed
    key raises and is not cached."""
    return mldsa.MLDSA65PublicKey.from_public_bytes(key)
