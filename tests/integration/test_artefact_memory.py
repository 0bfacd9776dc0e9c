"""Loading an artefact costs memory in proportion to its file, whatever it declares: measured in
a fresh process, so its peak is that load's alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.artefacts import load_artefact_bytes, safetensors_bytes
from tests.support.models import TrainedModel


def test_a_tiny_file_declaring_a_huge_model_is_refused_before_allocation(
    watermarked: TrainedModel, tmp_path: Path
) -> None:
    state = load_artefact_bytes(watermarked.artefact_bytes)
    bomb = {"stem_width": 4096, "widths": [4096, 4096, 4096]}
    data = safetensors_bytes(
        {"fc.bias": state["fc.bias"]},
        **{"authchain.arch": "small_resnet", "authchain.config": json.dumps(bomb)},
    )
    assert len(data) < 1024
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(data)
    # in a fresh process, so its peak memory is this load's alone (the real model: ~5 GiB)
    script = (
        "import resource, sys\n"
        "from authchain.ml_service.artefact import load_artefact\n"
        "from authchain.ml_service.errors import ArtefactError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_artefact(__import__('pathlib').Path(sys.argv[1]))\n"
        "except ArtefactError as exc:\n    print(exc.reason)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    reason, grown_kib = result.stdout.split()
    assert reason == "shape_mismatch"
    assert int(grown_kib) < 200 * 1024, f"grew {grown_kib} KiB"
