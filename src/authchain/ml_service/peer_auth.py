"""Evidence is for validators only: requests signed with a validator's key.

An evidence file holds the key seed of a watermark: whoever reads it can regenerate the
owner's triggers, labels and signature projection, and train them out of a copy. Validators
need it to verify a claim; nobody else does. So `GET /evidence/{hash}/content` (what a peer's
`PeerFetcher` asks for) is answered only for a request signed by a key in the network's
validator set, the Ed25519 keys of CometBFT's genesis on a testnet (`peer_auth.validators`).

A signed request carries three headers:

    X-Authchain-Peer-Key        "<scheme>:<hex public key>"  (ed25519 or ml-dsa-65)
    X-Authchain-Peer-Time       unix seconds when it was signed
    X-Authchain-Peer-Signature  hex signature over `request_message(...)`

The message binds the chain id, the method, the path (so the file) and the time, under a
domain tag no transaction or CometBFT vote begins with. A request more than
`max_clock_skew_secs` from this machine's clock is refused, so a captured request stops
working within a minute (and, beyond loopback, the link should be TLS: the response itself is
the secret). An unknown key is refused before any signature is checked, so a stranger's
request costs one dictionary lookup.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from authchain import signing

HEADER_KEY = "x-authchain-peer-key"
HEADER_TIME = "x-authchain-peer-time"
HEADER_SIGNATURE = "x-authchain-peer-signature"
DOMAIN = "authchain/peer-request/v1"


def request_message(chain_id: str, method: str, path: str, timestamp: int) -> bytes:
    """The bytes a peer request's signature covers."""
    return json.dumps(
        [DOMAIN, chain_id, method.upper(), path, timestamp], separators=(",", ":")
    ).encode()


class PeerKeyError(ValueError):
    """A peer key file that cannot be read; the message names the file and why."""


@dataclass(frozen=True)
class PeerKey:
    """This validator's signing key, as its ML service uses it for peer requests."""

    scheme: str
    seed: bytes
    public_key: bytes

    @classmethod
    def from_seed(cls, scheme: str, seed: bytes) -> PeerKey:
        return cls(scheme, seed, signing.public_key(scheme, seed))

    @property
    def header(self) -> str:
        return f"{self.scheme}:{self.public_key.hex()}"


def read_peer_key(path: Path) -> PeerKey:
    """A validator key: an authchain key file (`authchain keys new`) or CometBFT's
    `priv_validator_key.json` (its Ed25519 seed is the first 32 of the 64 private bytes)."""
    try:
        data = json.loads(path.read_text())
        if "priv_key" in data:  # CometBFT
            if data["priv_key"]["type"] != "tendermint/PrivKeyEd25519":
                raise ValueError(f"unsupported CometBFT key type {data['priv_key']['type']}")
            return PeerKey.from_seed("ed25519", base64.b64decode(data["priv_key"]["value"])[:32])
        return PeerKey.from_seed(data["scheme"], bytes.fromhex(data["private_key"]))
    except (OSError, ValueError, KeyError, TypeError, signing.BadSignature) as exc:
        raise PeerKeyError(f"cannot read the peer key file {path}: {exc}") from exc


@dataclass(frozen=True)
class RequestSigner:
    """Signs this service's requests to its peers."""

    key: PeerKey
    chain_id: str

    def headers(self, method: str, path: str, now: float | None = None) -> dict[str, str]:
        timestamp = int(time.time() if now is None else now)
        message = request_message(self.chain_id, method, path, timestamp)
        signature = signing.sign(self.key.scheme, self.key.seed, message)
        return {
            HEADER_KEY: self.key.header,
            HEADER_TIME: str(timestamp),
            HEADER_SIGNATURE: signature.hex(),
        }


class PeerAuthError(Exception):
    """A request that is not a validator's; `reason` is the machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PeerAuthenticator:
    """Decides whether a request was signed by one of `validators` for `chain_id`."""

    def __init__(
        self,
        chain_id: str | None,
        validators: Iterable[tuple[str, bytes]],
        max_clock_skew_secs: float = 60.0,
    ) -> None:
        self.chain_id = chain_id
        self.validators = {f"{scheme}:{key.hex()}": (scheme, key) for scheme, key in validators}
        self.max_clock_skew_secs = max_clock_skew_secs

    def check(
        self, method: str, path: str, headers: Mapping[str, str], now: float | None = None
    ) -> str:
        """The signer's `<scheme>:<hex key>`, or PeerAuthError saying why the request is not
        a validator's."""
        if not self.validators or self.chain_id is None:
            raise PeerAuthError(
                "evidence_private",
                "evidence holds watermark keys and is served only to this network's "
                "validators; this service has no validator set (peer_auth.validators)",
            )
        given = headers.get(HEADER_KEY)
        if given is None:
            raise PeerAuthError(
                "peer_auth_required",
                "evidence holds watermark keys and is served only to this network's "
                f"validators: sign the request with a validator key ({HEADER_KEY}, "
                f"{HEADER_TIME}, {HEADER_SIGNATURE})",
            )
        validator = self.validators.get(given.strip().lower())
        if validator is None:
            raise PeerAuthError(
                "peer_not_validator", f"{HEADER_KEY} is not a key of this network's validators"
            )
        try:
            timestamp = int(headers.get(HEADER_TIME, ""))
            signature = bytes.fromhex(headers.get(HEADER_SIGNATURE, ""))
        except ValueError:
            raise PeerAuthError(
                "peer_auth_malformed",
                f"{HEADER_TIME} must be unix seconds and {HEADER_SIGNATURE} hex",
            ) from None
        skew = abs((time.time() if now is None else now) - timestamp)
        if skew > self.max_clock_skew_secs:
            raise PeerAuthError(
                "peer_auth_stale",
                f"{HEADER_TIME} is {skew:.0f} s from this service's clock "
                f"(at most {self.max_clock_skew_secs:.0f} s)",
            )
        scheme, key = validator
        message = request_message(self.chain_id, method, path, timestamp)
        try:
            signing.verify(scheme, key, message, signature)
        except signing.BadSignature as exc:
            raise PeerAuthError(
                "peer_signature_invalid",
                f"{HEADER_SIGNATURE}: {exc} (for this chain id, method, path and time)",
            ) from None
        return given
