"""The certificate a thief who reads the chain cannot obtain, end to end on a real devnet
(ML service, node and gateway processes) with our own CLI:

1. a stranger cannot read a registration's evidence (its key) from the ML service;
2. the owner registers a model that carries three spare watermarks (`authchain register`),
   committing to their evidence hashes and uploading none of them;
3. the thief holds the primary evidence (as every validator operator does), trains that
   watermark out of a copy, adds his own and registers it: it commits, because the watermark
   it was checked against is gone;
4. `authchain dispute` checks the copy locally, reveals one spare to the validators and files
   a TxDispute: the copy is overturned, naming the owner's model, the dispute and the spare;
5. an honest, unrelated registration is untouched; disputing it is refused locally, before
   any spare is revealed;
6. `authchain watch` finds the thief's next copy on its own and disputes it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from authchain.chain.crypto import write_key_file
from authchain.chain.types import Aid
from authchain.client import GatewayClient, MlServiceClient
from authchain.devnet import Devnet, Process
from authchain.ml_service import attacks
from authchain.ml_service.artefact import encode_artefact, load_artefact
from tests.support.devnet import REPO, seed_body
from tests.support.models import SPARED_KEY, TrainedModel


def authchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authchain", *args], capture_output=True, text=True, cwd=REPO,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def owner_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("owner") / "owner.key"
    write_key_file(path, SPARED_KEY)
    return path


def register_unsigned(gw: GatewayClient, ml: MlServiceClient, model: TrainedModel) -> None:
    ml.upload_artefact(model.artefact)
    ml.upload_evidence(model.evidence)
    status = gw.wait_for_tx(gw.register_unsigned(seed_body(model))["tx_hash"])
    assert status.status == "committed", status


def test_a_stolen_copy_with_its_primary_watermark_stripped_is_overturned_by_a_spare(
    devnet: Devnet, gw: GatewayClient, ml: MlServiceClient, owner_key: Path,
    spared: TrainedModel, stripped: TrainedModel, watermarked: TrainedModel,
) -> None:  # fmt: skip
    owner_dir = spared.artefact.parent
    # 2. the owner registers, signed, with our CLI: the spares are committed, not uploaded
    done = authchain("register", "--key", str(owner_key), "--model", str(owner_dir),
                     "--upload", devnet.ml_url, "--gateway", devnet.gateway_url)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "committed" in done.stdout
    spares = [s.evidence_hash for s in spared.result.spares]
    original = gw.model(Aid.from_hex(spared.aid))
    assert [str(h) for h in original.spares] == spares and original.status == "registered"
    for spare in spares:
        assert httpx.get(f"{devnet.ml_url}/evidence/{spare}").status_code == 404
    # 1. nobody but a validator reads evidence: a devnet's service serves it to no one
    refused = httpx.get(f"{devnet.ml_url}/evidence/{spared.evidence_hash}/content")
    assert refused.status_code == 401 and refused.json()["reason"] == "evidence_private"
    # 3. the stripped copy commits (as the thief's own), and so does an unrelated model
    register_unsigned(gw, ml, stripped)
    register_unsigned(gw, ml, watermarked)
    assert gw.model(Aid.from_hex(stripped.aid)).status == "registered"
    # 5. disputing the unrelated model is refused locally: no spare is revealed
    refused_locally = authchain(
        "dispute", "--key", str(owner_key), "--model", str(owner_dir), "--suspect",
        watermarked.aid, "--upload", devnet.ml_url, "--gateway", devnet.gateway_url,
    )  # fmt: skip
    assert refused_locally.returncode == 1, refused_locally.stdout + refused_locally.stderr
    assert "does not carry spare 0" in refused_locally.stdout + refused_locally.stderr
    assert httpx.get(f"{devnet.ml_url}/evidence/{spares[0]}").status_code == 404
    # 4. the owner disputes the copy with his first spare
    disputed = authchain(
        "dispute", "--key", str(owner_key), "--model", str(owner_dir), "--suspect", stripped.aid,
        "--upload", devnet.ml_url, "--gateway", devnet.gateway_url,
    )  # fmt: skip
    assert disputed.returncode == 0, disputed.stdout + disputed.stderr
    assert "verdict: upheld" in disputed.stdout
    tx_hash = disputed.stdout.split("tx_hash:")[1].split()[0]
    copy = gw.model(Aid.from_hex(stripped.aid))
    assert copy.status == "overturned" and copy.overturned_by is not None
    assert str(copy.overturned_by.earlier_aid) == spared.aid
    assert str(copy.overturned_by.earlier_owner) == spared.owner
    assert str(copy.overturned_by.dispute_tx) == tx_hash
    assert copy.overturned_by.spare_index == 0
    verdict = gw.dispute(tx_hash)
    assert verdict.upheld and verdict.height == copy.overturned_by.height
    assert verdict.suspect_log2_p_value is not None and verdict.suspect_log2_p_value <= -64
    assert verdict.earlier_log2_p_value is not None and verdict.earlier_log2_p_value <= -64
    assert gw.model(Aid.from_hex(spared.aid)).spent_spares == [0]
    assert [str(a) for a in gw.model(Aid.from_hex(spared.aid)).overturned] == [stripped.aid]
    # the honest registrations stand
    assert gw.model(Aid.from_hex(watermarked.aid)).status == "registered"
    assert gw.model(Aid.from_hex(spared.aid)).status == "registered"
    # a second dispute of the overturned copy is refused at admission, naming the field
    again = authchain(
        "dispute", "--key", str(owner_key), "--model", str(owner_dir), "--suspect", stripped.aid,
        "--upload", devnet.ml_url, "--gateway", devnet.gateway_url,
    )  # fmt: skip
    assert again.returncode != 0 and "already_overturned" in again.stdout + again.stderr


def test_watch_finds_and_disputes_a_copy_on_its_own(
    devnet: Devnet, gw: GatewayClient, ml: MlServiceClient, owner_key: Path,
    spared: TrainedModel, stripped: TrainedModel, tmp_path: Path,
) -> None:  # fmt: skip
    """`authchain watch` runs; the thief registers a channel-permuted copy of his (overturned)
    model, as its lineage, under his same evidence; the watcher checks it against the two
    unspent spares in one pass and disputes it: overturned too."""
    owner_dir = spared.artefact.parent
    watcher = Process(
        ["watch", "--key", str(owner_key), "--model", str(owner_dir), "--upload", devnet.ml_url,
         "--gateway", devnet.gateway_url, "--every", "0.5"],
        tmp_path / "watch.log", cwd=REPO,
    ).start()  # fmt: skip
    try:
        loaded = load_artefact(stripped.artefact)
        permuted = attacks.permute_channels(loaded.model, torch.Generator().manual_seed(3))
        path = tmp_path / "model.safetensors"
        path.write_bytes(encode_artefact(permuted, loaded.arch, loaded.config))
        aid = ml.upload_artefact(path)
        body = seed_body(stripped, aid_hex=aid)
        status = gw.wait_for_tx(gw.register_unsigned(body)["tx_hash"])
        assert status.status == "committed", status
        copy = gw.model(Aid.from_hex(aid))
        assert [str(p) for p in copy.parents] == [stripped.aid]  # the thief's own lineage
        deadline = time.monotonic() + 120
        while gw.model(Aid.from_hex(aid)).status != "overturned":
            assert watcher.popen is not None and watcher.popen.poll() is None, "watch exited"
            assert time.monotonic() < deadline, (tmp_path / "watch.log").read_text()
            time.sleep(0.5)
    finally:
        code = watcher.stop()
    log = (tmp_path / "watch.log").read_text()
    assert code == 0, log
    assert f"checked {aid[:12]}" in log and "carries spare 1" in log and "upheld" in log, log
    overturned = gw.model(Aid.from_hex(aid)).overturned_by
    assert overturned is not None and overturned.spare_index == 1
    assert gw.model(Aid.from_hex(spared.aid)).spent_spares == [0, 1]
