"""timm architectures in artefacts: built by name from the metadata, only from the allow-list,
checked against the tensors before anything is allocated; the watermark hook on them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as save_safetensors

from authchain.ml_service import artefact as artefact_module
from authchain.ml_service.artefact import (
    META_ARCH,
    META_CONFIG,
    META_INPUT_SHAPE,
    encode_artefact,
    load_artefact,
)
from authchain.ml_service.errors import ArtefactError
from authchain.ml_service.models import TimmConfig, get_architecture, timm_models_allowed
from authchain.ml_service.models.timm_arch import build_timm
from authchain.ml_service.watermark.embed import v1_spec
from authchain.ml_service.watermark.signature import spatial_layers
from authchain.watermark import Watermark, pick_feature_layer

TEST_MODELS = ("test_resnet", "test_efficientnet", "test_vit")
README = Path(__file__).resolve().parents[2] / "README.md"


def timm_artefact(tmp_path: Path, name: str, size: int = 32) -> tuple[Path, torch.nn.Module]:
    config = TimmConfig(name, 10, 3, (size, size))
    with timm_models_allowed([name]):
        model = build_timm(config)
        arch = get_architecture("timm").specialize(config)
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(encode_artefact(model, arch, config))
    return path, model


@pytest.mark.parametrize("name", TEST_MODELS)
def test_a_timm_artefact_round_trips(tmp_path: Path, name: str) -> None:
    path, model = timm_artefact(tmp_path, name)
    with timm_models_allowed(TEST_MODELS):
        loaded = load_artefact(path)
    assert loaded.arch.input_shape == (3, 32, 32)
    assert loaded.config == TimmConfig(name, 10, 3, (32, 32))
    original = model.state_dict()
    for key, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, original[key]), key
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model.eval()(x))


def test_a_model_off_the_allow_list_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path, _ = timm_artefact(tmp_path, "test_resnet")
    with timm_models_allowed(["resnet18"]), pytest.raises(ArtefactError) as caught:
        load_artefact(path)
    assert caught.value.reason == "architecture_not_allowed"
    assert "test_resnet" in caught.value.detail and "timm_models" in caught.value.detail


def test_tensors_of_another_architecture_are_refused_before_any_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata says test_resnet; the tensors are test_efficientnet's."""
    _, other = timm_artefact(tmp_path, "test_efficientnet")
    tensors = {k: v.contiguous() for k, v in other.state_dict().items()}
    liar = tmp_path / "liar.safetensors"
    metadata = {
        META_ARCH: "timm",
        META_CONFIG: json.dumps({"model": "test_resnet", "num_classes": 10, "in_chans": 3,
                                 "input_size": [32, 32]}),
        META_INPUT_SHAPE: "[3, 32, 32]",
    }  # fmt: skip
    liar.write_bytes(save_safetensors(tensors, metadata=metadata))

    def no_read(path: Path) -> Any:
        raise AssertionError("tensors were read before the architecture was checked")

    monkeypatch.setattr(artefact_module, "_read_safetensors_tensors", no_read)
    with timm_models_allowed(TEST_MODELS), pytest.raises(ArtefactError) as caught:
        load_artefact(liar)
    assert caught.value.reason == "shape_mismatch"


@pytest.mark.parametrize(
    ("config", "reason", "naming"),
    [
        ({"model": "test_resnet", "num_classes": 10, "pretrained": True}, "bad_config",
         "pretrained"),
        ({"model": "test_resnet", "num_classes": 10, "checkpoint_path": "/etc/x"}, "bad_config",
         "checkpoint_path"),
        ({"model": "../../x", "num_classes": 10}, "bad_config", "model"),
        ({"model": "test_resnet", "num_classes": 1}, "bad_config", "num_classes"),
        ({"model": "test_resnet", "num_classes": 10, "input_size": [99999, 2]}, "bad_config",
         "input_size"),
        ({"model": "no_such_net", "num_classes": 10}, "unknown_architecture", "no_such_net"),
    ],
)  # fmt: skip
def test_a_config_holds_only_names_and_shapes(
    tmp_path: Path, config: dict[str, Any], reason: str, naming: str
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(
        save_safetensors({"w": torch.zeros(1)}, metadata={META_ARCH: "timm",
                                                          META_CONFIG: json.dumps(config)})
    )  # fmt: skip
    with timm_models_allowed([*TEST_MODELS, "no_such_net"]), pytest.raises(ArtefactError) as err:
        load_artefact(path)
    assert err.value.reason == reason and naming in err.value.detail


def test_the_hook_refuses_inputs_of_another_shape_and_spreads_the_signature() -> None:
    with timm_models_allowed(["test_resnet"]):
        model = build_timm(TimmConfig("test_resnet", 10, 3, (32, 32)))
    config = {"model": "test_resnet", "num_classes": 10, "input_size": [32, 32]}
    wm = Watermark(model, key=b"\x01" * 32, arch="timm", config=config)
    layers = [name for name, _ in wm.key.signature_layers]
    assert layers == spatial_layers(model) and len(layers) > 3  # every k x k conv, k > 1
    assert sum(bits for _, bits in wm.key.signature_layers) == 2048
    v1 = Watermark(model, key=b"\x01" * 32, arch="timm", config=config, spec=v1_spec())
    assert v1.spec.feature_layer == pick_feature_layer(model, 128)  # v1 picks one wide layer
    assert dict(model.named_parameters())[v1.spec.feature_layer][0].numel() >= 128
    x, y = wm.mix(torch.zeros(12, 3, 32, 32), torch.zeros(12, dtype=torch.int64))
    assert len(wm.spares) == 3  # the default: each key's triggers join the batch
    assert x.shape == (12 + 8 * 4, 3, 32, 32) and y.shape == (44,)
    with pytest.raises(ValueError, match="architecture takes"):
        wm.mix(torch.zeros(4, 3, 64, 64), torch.zeros(4, dtype=torch.int64))


def test_the_hook_takes_any_channels_size_and_classes(tmp_path: Path) -> None:
    """One grey channel, 48×40 inputs, 7 classes: triggers, evidence and artefact follow."""
    config = {"model": "test_efficientnet", "num_classes": 7, "in_chans": 1, "input_size": [48, 40]}
    with timm_models_allowed(["test_efficientnet"]):
        model = build_timm(TimmConfig("test_efficientnet", 7, 1, (48, 40)))
    wm = Watermark(model, key=b"\x02" * 32, arch="timm", config=config)
    x, y = wm.mix(torch.rand(5, 1, 48, 40), torch.randint(7, (5,)), count=3)
    assert x.shape == (8, 1, 48, 40) and int(y.max()) < 7
    loss = torch.nn.functional.cross_entropy(model(x), y) + wm.regulariser()
    loss.backward()  # type: ignore[no-untyped-call]
    result = wm.finish(tmp_path, quiet=True)
    evidence = json.loads((tmp_path / "evidence.json").read_text())
    assert evidence["input_shape"] == [1, 48, 40] and evidence["num_classes"] == 7
    with timm_models_allowed(["test_efficientnet"]):
        loaded = load_artefact(result.artefact)
    assert loaded.arch.input_shape == (1, 48, 40)
