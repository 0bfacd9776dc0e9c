"""authchain: ML-aware consensus.

A blockchain whose block validity includes an ML authenticity check (`V_auth`): a block that
registers model artefacts is accepted only if every artefact carries the watermark its owner
claims. Subpackages:

- `authchain.chain`      — types, canonical codec, signatures, state, consensus, storage, node.
- `authchain.gateway`    — the public HTTP API in front of a node.
- `authchain.ml_service` — the watermark verifier (`V_auth`) as an HTTP service (needs `[ml]`).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
