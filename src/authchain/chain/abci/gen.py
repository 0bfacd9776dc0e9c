"""Generate the ABCI 2.0 protobuf classes from the pinned CometBFT module (a build step).

    python -m authchain.chain.abci.gen          # what `make` runs before anything needs them
    python -m authchain.chain.abci.gen OUT --cometbft-proto DIR --gogoproto DIR   # no Go here

The `.proto` files come from the Go module cache, where `go install
github.com/cometbft/cometbft/cmd/cometbft@COMETBFT_VERSION` (the Makefile's cometbft target) put
them, with the exact gogoproto version that CometBFT's go.mod pins. `go mod download` fetches
either one if it is missing. grpcio-tools' bundled protoc writes `*_pb2.py` and `*_pb2.pyi`
into `authchain/chain/abci/pb/`, which git ignores: the classes always match the pinned
CometBFT, and nothing generated is ever committed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

COMETBFT_VERSION = "v0.38.26"
"""The CometBFT release authchain speaks ABCI 2.0 with (the Makefile reads it from here)."""
COMETBFT_MODULE = "github.com/cometbft/cometbft"
GOGOPROTO_MODULE = "github.com/cosmos/gogoproto"
PROTOS = (
    "tendermint/abci/types.proto",
    "tendermint/crypto/proof.proto",
    "tendermint/crypto/keys.proto",
    "tendermint/types/params.proto",
    "tendermint/types/validator.proto",
    "gogoproto/gogo.proto",
)
OUT = Path(__file__).parent / "pb"
STAMP = OUT / ".generated"


def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds `module@version` (downloading it if needed)."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, check=False, env=None,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"go mod download {module}@{version} failed: {done.stderr or done.stdout}")
    return Path(json.loads(done.stdout)["Dir"])


def generate(out: Path = OUT, cometbft_proto: Path | None = None, gogo: Path | None = None) -> None:
    """Write the Python classes for `PROTOS` into `out`, from the Go module cache unless the
    pinned modules' directories are given (a Docker build copies them from a Go stage)."""
    from grpc_tools import protoc  # build-time only: the `cometbft` extra

    if cometbft_proto is None or gogo is None:
        cometbft = module_dir(COMETBFT_MODULE, COMETBFT_VERSION)
        go_mod = (cometbft / "go.mod").read_text()
        pinned = re.search(rf"^\s*{re.escape(GOGOPROTO_MODULE)} (v\S+)", go_mod, re.M)
        if pinned is None:
            raise SystemExit(f"{cometbft}/go.mod does not name {GOGOPROTO_MODULE}")
        cometbft_proto = cometbft / "proto"
        gogo = module_dir(GOGOPROTO_MODULE, pinned.group(1))
    well_known = resources.files("grpc_tools") / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("tendermint", "gogoproto"):
        shutil.rmtree(out / stale, ignore_errors=True)
    args = [
        "protoc",
        f"-I{cometbft_proto}",
        f"-I{gogo}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in {Path(p).parent for p in PROTOS}:
        for part in (package, *package.parents[:-1]):
            (out / part / "__init__.py").touch()
            (out / part / "py.typed").touch()
    (out / STAMP.name).write_text(f"{COMETBFT_MODULE}@{COMETBFT_VERSION}\n")
    print(f"ABCI protobuf classes for CometBFT {COMETBFT_VERSION} written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=OUT)
    parser.add_argument("--cometbft-proto", type=Path, help="the pinned module's proto/ dir")
    parser.add_argument("--gogoproto", type=Path, help="the pinned gogoproto module's root")
    args = parser.parse_args()
    generate(args.out, args.cometbft_proto, args.gogoproto)


if __name__ == "__main__":
    main()
