"""Protocol types (seed `chain/src/types`). Re-exports everything callers need."""

from authchain.chain.types.artefact import ArtefactMetadata, Overturn
from authchain.chain.types.block import Block, Header
from authchain.chain.types.ids import (
    HASH_LEN,
    ZERO_HASH,
    AccountId,
    Aid,
    Amount,
    BlockHash,
    EvidenceHash,
    Hash256,
    Height,
    Nonce,
    TimestampMs,
    TxHash,
)
from authchain.chain.types.record import U64_MAX, Record
from authchain.chain.types.tx import (
    EvidenceRef,
    ModelUseMetadata,
    SigScheme,
    Transaction,
    TxDispute,
    TxRegisterModel,
    TxTransfer,
    TxUseModel,
    WmProfile,
    get_signer,
)

__all__ = [
    "HASH_LEN",
    "U64_MAX",
    "ZERO_HASH",
    "AccountId",
    "Aid",
    "Amount",
    "ArtefactMetadata",
    "Block",
    "BlockHash",
    "EvidenceHash",
    "EvidenceRef",
    "Hash256",
    "Header",
    "Height",
    "ModelUseMetadata",
    "Nonce",
    "Overturn",
    "Record",
    "SigScheme",
    "TimestampMs",
    "Transaction",
    "TxDispute",
    "TxHash",
    "TxRegisterModel",
    "TxTransfer",
    "TxUseModel",
    "WmProfile",
    "get_signer",
]
