"""An ABCI server over an Application on an in-memory store, with a verifier double, and
requests to it as CometBFT sends them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from dataclasses import dataclass, field

from authchain.chain import crypto
from authchain.chain.abci.proto import abci
from authchain.chain.abci.server import AbciServer
from authchain.chain.app import Application
from authchain.chain.config import ConsensusConfig
from authchain.chain.state import Validator
from authchain.chain.storage import MemBlockStore
from authchain.chain.types import AccountId, SigScheme
from authchain.chain.validation.ml import MlValidity
from tests.support.chain import CHAIN, FakeVerifier, make_genesis

COMET_KEY = crypto.KeyPair.from_seed(SigScheme.ED25519, b"\x07" * 32)
ADDRESS = hashlib.sha256(COMET_KEY.public_key).digest()[:20]


@dataclass
class FakeClock:
    """A clock the test advances: each `sleep` moves it on at once (and lets other tasks run,
    as a real sleep does), so a 20-second wait takes no time."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_server(
    verifier: FakeVerifier | None = None,
    wait: float = 0.0,
    chain_id: str = CHAIN,
    clock: FakeClock | None = None,
    accounts: tuple[tuple[AccountId, int], ...] | None = None,
    mempool: tuple[int, int] = (0, 0),
    app_mempool: bool = False,
) -> AbciServer:
    """`app_mempool`: the app holds the pending txs (`abci.mempool = "app"`), in a pool of its
    own that it persists, as `authchain abci` runs it then."""
    genesis = dataclasses.replace(
        make_genesis(),
        chain_id=chain_id,
        validators=(Validator(COMET_KEY.account, COMET_KEY.scheme, COMET_KEY.public_key),),
    )
    if accounts is not None:
        genesis = dataclasses.replace(genesis, accounts=accounts)
    ml = MlValidity(verifier or FakeVerifier())
    app = Application(
        MemBlockStore(),
        genesis,
        ConsensusConfig(max_pool_txs=10, max_artefacts_per_block=4),
        ml,
        persist_pool=app_mempool,
        mempool=mempool,
    )
    return AbciServer(app, unavailable_wait_secs=wait, clock=clock, app_mempool=app_mempool)


async def call(server: AbciServer, **request: object) -> abci.Response:
    return await server.handle(abci.Request(**request))  # type: ignore[arg-type]


async def init(server: AbciServer) -> bytes:
    response = await call(
        server, init_chain=abci.RequestInitChain(chain_id=server.app.genesis.chain_id)
    )
    return response.init_chain.app_hash
