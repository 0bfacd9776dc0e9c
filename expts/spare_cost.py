"""What spare watermarks cost in task accuracy (issue 22): one SmallResNet trained as
`authchain model train` trains it, with S spares or none, and every key's statistics.

    .venv/bin/python expts/spare_cost.py --size full --spares 3 --epochs 8 --seed 0   # ~13 min
    .venv/bin/python expts/spare_cost.py --size full --spares 0 --epochs 6 --seed 0   # ~3 min

Prints one JSON line: test accuracy on the 360 held-out digits, training seconds, and for the
primary and each spare its trigger hits and signature bits with their log2 p-values.
docs/SECURITY.md ("Spare watermarks and disputes") quotes seeds 0-2.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from authchain.ml_service.data import load_digits_split
from authchain.ml_service.models import SmallResNet, SmallResNetConfig, get_architecture
from authchain.ml_service.train import TrainConfig, evaluate_accuracy, train
from authchain.ml_service.watermark.embed import (
    EmbedSpec,
    make_evidence,
    new_key_material,
    spare_keys,
)
from authchain.ml_service.watermark.verify import compute_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "full"], default="full")
    parser.add_argument("--spares", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arch = get_architecture("small_resnet")
    config = SmallResNetConfig.tiny() if args.size == "tiny" else SmallResNetConfig()
    torch.manual_seed(args.seed)
    model = SmallResNet(config)
    train_data, test_data = load_digits_split()
    spec = EmbedSpec()
    key = new_key_material(b"\x01" * 32, arch, 10, spec, bytes([args.seed]) * 32, model)
    spares = spare_keys(key, b"\x02" * 32, args.spares)
    started = time.perf_counter()
    train(model, train_data, TrainConfig(epochs=args.epochs, seed=args.seed), key=key,
          spares=spares, spec=spec)  # fmt: skip
    seconds = time.perf_counter() - started
    keys = []
    for k in [key, *spares]:
        stats = compute_stats(model, make_evidence(model, k, arch, spec), precision="float64")
        keys.append({
            "triggers": stats.trigger_correct, "bits": stats.feat_matches,
            "log2_p_trigger": round(stats.log2_p_value, 1),
            "log2_p_signature": round(stats.log2_feat_p_value, 1),
        })  # fmt: skip
    print(json.dumps({
        "size": args.size, "spares": args.spares, "epochs": args.epochs, "seed": args.seed,
        "test_accuracy": round(evaluate_accuracy(model, test_data), 4),
        "seconds": round(seconds), "keys": keys,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
