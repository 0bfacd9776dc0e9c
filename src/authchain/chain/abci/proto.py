"""The ABCI 2.0 protobuf classes, generated at build time by `authchain.chain.abci.gen`.

protoc writes Python imports as absolute paths (`from tendermint.crypto import proof_pb2`),
so the generated tree in `abci/pb/` is put on `sys.path` before the classes are imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

PB = Path(__file__).parent / "pb"

if not (PB / "tendermint" / "abci" / "types_pb2.py").exists():
    raise ImportError(
        f"the ABCI protobuf classes are not generated yet ({PB}): run `make proto` "
        "(or `python -m authchain.chain.abci.gen`, which needs Go and grpcio-tools)"
    )
if str(PB) not in sys.path:
    sys.path.insert(0, str(PB))

from tendermint.abci import types_pb2 as abci  # noqa: E402

__all__ = ["abci"]
