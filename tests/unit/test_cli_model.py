"""`authchain model ...` and `authchain ml-service` on the command line."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

from typer.testing import CliRunner

from authchain.cli import app
from tests.support.models import TrainedModel

runner = CliRunner()


def test_model_verify_passes_a_watermarked_model(watermarked: TrainedModel) -> None:
    args = ["model", "verify", str(watermarked.artefact), str(watermarked.evidence), "--json"]
    result = runner.invoke(app, [*args, "--owner", watermarked.owner])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["trigger_acc"] >= 0.9


def test_model_verify_fails_a_clean_model(clean: TrainedModel) -> None:
    result = runner.invoke(app, ["model", "verify", str(clean.artefact), str(clean.evidence)])
    assert result.exit_code == 1
    assert "trigger_acc_below_tau_input" in result.stdout


def test_model_verify_reports_unreadable_files_without_traceback(
    watermarked: TrainedModel, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"a": 1}, protocol=2) + b"junk")
    result = runner.invoke(app, ["model", "verify", str(evil), str(watermarked.evidence)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    missing = runner.invoke(app, ["model", "verify", str(tmp_path / "nope"), "x"])
    assert missing.exit_code == 1 and "error" in missing.output


def test_model_evidence_for_an_existing_model(clean: TrainedModel, tmp_path: Path) -> None:
    args = ["model", "evidence", str(clean.artefact), "--owner", "dd" * 32]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "ev"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["aid"] == clean.aid and report["owner"] == "dd" * 32
    assert report["stats"]["trigger_acc"] < 0.5  # honest evidence for an unwatermarked model
    # it says the model fails, and recommends nothing (the old tool recommended 0.0 / 0.7)
    assert report["passes"] is False and report["wm_profile"] is None
    plain = runner.invoke(app, ["model", "evidence", str(clean.artefact), "--owner", "dd" * 32,
                                "-o", str(tmp_path / "ev2")])  # fmt: skip
    said = " ".join(plain.stdout.split())  # rich wraps long lines
    assert "it fails verification" in said and "(recommended)" not in said


def test_model_train_and_verify_print_both_p_values_against_the_floors(
    watermarked: TrainedModel, tmp_path: Path
) -> None:
    args = ["model", "verify", str(watermarked.artefact), str(watermarked.evidence)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "trigger: 100/100 correct" in out and "floor 2^-64 ok" in out
    assert "signature:" in out and "floor 2^-32 ok" in out
    assert "p = 0 " not in out  # a p-value below a double's range is printed by its log2
    # the chain's floors, not the caller's wishes: a chain with a stricter floor refuses
    strict = tmp_path / "strict.toml"
    strict.write_text("[genesis.security]\ntrigger_p_log2 = 400\n")
    refused = runner.invoke(app, [*args, "--chain-config", str(strict), "--json"])
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["reason"] == "trigger_p_above_floor"


def test_recommended_profiles_never_loosen_the_floors(watermarked: TrainedModel) -> None:
    from authchain.floors import DEFAULT_FLOORS, check_profile
    from authchain.ml_service.watermark.embed import recommend_profile
    from authchain.ml_service.watermark.verify import judge

    report = watermarked.result
    assert report.passes and report.wm_profile is not None
    strength = dataclasses.asdict(report.strength)
    assert (
        check_profile(DEFAULT_FLOORS, **strength, **dataclasses.asdict(report.wm_profile)) is None
    )
    base = report.stats
    for correct in range(0, 101, 3):
        for matches in range(0, 2049, 64):
            stats = dataclasses.replace(
                base, trigger_correct=correct, trigger_acc=correct / 100,
                feat_matches=matches, feat_dist=(2048 - matches) / 2048,
            )  # fmt: skip
            profile = recommend_profile(stats, DEFAULT_FLOORS)
            if profile is None:  # only when the model fails the floors
                # 2^-64 needs 46/100, 2^-32 needs 1166/2048
                assert correct < 46 or matches < 1166
                continue
            assert judge(stats, profile, DEFAULT_FLOORS) is None  # the model passes it
            assert check_profile(DEFAULT_FLOORS, **strength, **dataclasses.asdict(profile)) is None


def test_model_train_needs_exactly_one_owner(tmp_path: Path) -> None:
    both = runner.invoke(app, ["model", "train", "--owner", "aa" * 32, "--key", "k", "--tiny"])
    assert both.exit_code == 2 and "exactly one" in both.output
    bad = runner.invoke(app, ["model", "train", "--owner", "xyz", "--tiny"])
    assert bad.exit_code == 2 and "--owner" in bad.output


def test_help_lists_the_ml_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert "ml-service" in result.output and "model" in result.output
    train_help = runner.invoke(app, ["model", "train", "--help"])
    assert "--tiny" in train_help.output and "--from" in train_help.output


def test_model_train_arch_names_an_unknown_model(tmp_path: Path) -> None:
    args = ["model", "train", "--arch", "no_such_net", "--owner", "ab" * 32, "-o", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "no_such_net" in result.output
    assert "Traceback" not in result.output
